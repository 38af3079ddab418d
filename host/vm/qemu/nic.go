//go:build linux

package qemu

import (
	"context"
	"fmt"
	"net"
	"strings"

	"github.com/uvmgcs/gcs/host/vm"
)

// forwardHelper relays one forwarded connection (Debian's busybox-static).
const forwardHelper = "/bin/busybox"

// AddNIC hot-adds a virtio-net NIC on QEMU's user-mode network in its
// restricted form: the guest reaches nothing but what n.Forwards names
// (guest address:port → host address:port). It returns the NIC's MAC,
// which the guest's network configuration finds it by.
func (v *VM) AddNIC(ctx context.Context, n vm.NIC) (string, error) {
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
