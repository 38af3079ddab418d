//go:build linux

package qemu

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
)

// NIC is a network adapter on QEMU's user-mode network in its restricted
// form: the guest reaches only the forwards listed.
type NIC struct {
	Subnet   string    // the user network, e.g. "10.0.2.0/24" (QEMU's default if empty)
	Forwards []Forward // guest connections the host carries out
}

// Forward carries the guest's TCP connections to Guest (address:port on
// the user network) to Host (address:port on the host), one relay per
// connection.
type Forward struct {
	Guest, Host string
}

// forwardHelper relays one forwarded connection (Debian's busybox-static).
const forwardHelper = "/bin/busybox"

// AddNIC hot-adds a virtio-net NIC on QEMU's user-mode network in its
// restricted form: the guest reaches nothing but what n.Forwards names
// (guest address:port → host address:port). It returns the NIC's MAC,
// which the guest's network configuration finds it by.
func (v *VM) AddNIC(ctx context.Context, n NIC) (string, error) {
	if v.opts.Machine == MachineMicroVM {
		return "", fmt.Errorf("add nic: the microvm machine cannot hot-plug a NIC: %w", errors.ErrUnsupported)
	}
	qc, err := v.running()
	if err != nil {
		return "", fmt.Errorf("add nic: %w", err)
	}
	v.devMu.Lock()
	defer v.devMu.Unlock()
	i := v.nics
	id := fmt.Sprintf("net%d", i)
	netdev := map[string]any{"type": "user", "id": id, "restrict": true}
	if n.Subnet != "" {
		netdev["net"] = n.Subnet
	}
	var fwds []map[string]string
	for _, f := range n.Forwards {
		host, port, err := net.SplitHostPort(f.Host)
		if err != nil || strings.ContainsAny(f.Guest+f.Host, ", -'\"") {
			return "", fmt.Errorf("add nic: forward %+v: bad address", f)
		}
		// A "cmd:" forward runs once per guest connection (a "tcp:" one
		// connects once, when the NIC is added): busybox nc carries it.
		fwds = append(fwds, map[string]string{"str": fmt.Sprintf("tcp:%s-cmd:%s nc %s %s", f.Guest, forwardHelper, host, port)})
	}
	if len(fwds) > 0 {
		netdev["guestfwd"] = fwds
	}
	if err := qc.Execute(ctx, "netdev_add", netdev, nil); err != nil {
		return "", fmt.Errorf("add nic: %w", err)
	}
	// A locally administered MAC derived from the NIC's index.
	mac := fmt.Sprintf("52:54:00:12:35:%02x", 0x10+i)
	dev := map[string]any{"driver": "virtio-net-pci", "id": id + "-dev", "netdev": id, "mac": mac}
	if err := qc.Execute(ctx, "device_add", dev, nil); err != nil {
		qc.Execute(context.WithoutCancel(ctx), "netdev_del", map[string]string{"id": id}, nil)
		return "", fmt.Errorf("add nic: %w", err)
	}
	v.nics++
	return mac, nil
}

// RemoveNIC hot-removes the NIC with MAC mac that AddNIC added: device_del,
// DEVICE_DELETED, then netdev_del. A NIC that is not there is removed.
func (v *VM) RemoveNIC(ctx context.Context, mac string) error {
	qc, err := v.running()
	if err != nil {
		return fmt.Errorf("remove nic %s: %w", mac, err)
	}
	var i int
	if _, err := fmt.Sscanf(mac, "52:54:00:12:35:%02x", &i); err != nil || i < 0x10 {
		return fmt.Errorf("remove nic %s: not a MAC AddNIC gives", mac)
	}
	id := fmt.Sprintf("net%d", i-0x10)
	v.devMu.Lock()
	defer v.devMu.Unlock()
	if err := v.deleteDevice(ctx, qc, id+"-dev"); err != nil {
		return fmt.Errorf("remove nic %s: %w", mac, err)
	}
	if err := qc.Execute(ctx, "netdev_del", map[string]string{"id": id}, nil); err != nil && !isClass(err, "DeviceNotFound") && !isClass(err, "GenericError") {
		return fmt.Errorf("remove nic %s: %w", mac, err)
	}
	return nil
}

// PlugNIC returns a function that adds n (AddNIC) and says how to remove
// it again: the form host/uvm's AddNIC takes (uvm.NICPlugger).
func (v *VM) PlugNIC(n NIC) func(context.Context) (string, func(context.Context) error, error) {
	return func(ctx context.Context) (string, func(context.Context) error, error) {
		mac, err := v.AddNIC(ctx, n)
		if err != nil {
			return "", nil, err
		}
		return mac, func(ctx context.Context) error { return v.RemoveNIC(ctx, mac) }, nil
	}
}
