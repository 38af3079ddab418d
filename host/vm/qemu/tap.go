//go:build linux

package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/uvmgcs/gcs/host/qmp"
	"github.com/uvmgcs/gcs/internal/log"
)

// TapNIC is a NIC backed by a tap device the caller has opened, in any
// network namespace (QEMU opens a tap by name only in its own, so it is
// handed the open file instead).
type TapNIC struct {
	// Tap is an open queue of the tap device (IFF_TAP|IFF_NO_PI, with
	// IFF_VNET_HDR for offloads). QEMU gets a copy; Tap stays the caller's.
	Tap *os.File
	// MAC is the guest adapter's address; it also names the NIC.
	MAC string
	// MTU is offered to the guest driver (virtio-net host_mtu); 0 leaves
	// the guest at 1500.
	MTU int
}

// maxMTU is the largest MTU virtio-net offers a guest.
const maxMTU = 65535

// tapIDs names the netdev (also the passed descriptor's name) and the
// device of the tap NIC with MAC mac.
func tapIDs(mac net.HardwareAddr) (netdev, device string) {
	netdev = "tap-" + strings.ReplaceAll(mac.String(), ":", "")
	return netdev, netdev + "-dev"
}

// AddTapNIC hot-adds a virtio-net NIC on the tap n.Tap: the descriptor
// goes to QEMU with "getfd", a tap netdev takes it, and a virtio-net-pci
// device with n.MAC joins the netdev. A failed step undoes the ones before.
func (v *VM) AddTapNIC(ctx context.Context, n TapNIC) error {
	mac, err := net.ParseMAC(n.MAC)
	if err != nil || len(mac) != 6 {
		return fmt.Errorf("add tap nic: MAC %q: want six bytes", n.MAC)
	}
	if n.Tap == nil || n.MTU < 0 || n.MTU > maxMTU {
		return fmt.Errorf("add tap nic %s: a tap file and an MTU of 0-%d are required", mac, maxMTU)
	}
	if v.opts.Machine == MachineMicroVM {
		return fmt.Errorf("add tap nic %s: the microvm machine cannot hot-plug a NIC: %w", mac, errors.ErrUnsupported)
	}
	qc, err := v.running()
	if err != nil {
		return fmt.Errorf("add tap nic %s: %w", mac, err)
	}
	netdev, device := tapIDs(mac)
	undo := context.WithoutCancel(ctx)
	logger := log.G(ctx).WithField("nic", netdev)
	v.devMu.Lock()
	defer v.devMu.Unlock()

	if err := qc.ExecuteWithFile(ctx, "getfd", map[string]string{"fdname": netdev}, n.Tap, nil); err != nil {
		return fmt.Errorf("add tap nic %s: pass the tap: %w", mac, err)
	}
	// netdev_add takes the named descriptor over, also when it fails; a
	// closefd afterwards finds nothing, which is what it should find.
	err = qc.Execute(ctx, "netdev_add", map[string]any{"type": "tap", "id": netdev, "fd": netdev}, nil)
	if err != nil {
		if cerr := qc.Execute(undo, "closefd", map[string]string{"fdname": netdev}, nil); cerr == nil {
			logger.Debug("closed the passed tap after a failed netdev_add")
		}
		return fmt.Errorf("add tap nic %s: %w", mac, err)
	}
	dev := map[string]any{"driver": "virtio-net-pci", "id": device, "netdev": netdev, "mac": mac.String()}
	if n.MTU > 0 {
		dev["host_mtu"] = n.MTU
	}
	if err := qc.Execute(ctx, "device_add", dev, nil); err != nil {
		if derr := qc.Execute(undo, "netdev_del", map[string]string{"id": netdev}, nil); derr != nil {
			logger.WithError(derr).Warn("remove the tap netdev after a failed device_add")
		}
		return fmt.Errorf("add tap nic %s: %w", mac, err)
	}
	logger.Debug("tap nic added")
	return nil
}

// RemoveTapNIC hot-removes the NIC AddTapNIC added with MAC mac:
// device_del, QEMU's DEVICE_DELETED once the guest let go, then netdev_del,
// which closes QEMU's tap descriptor. A NIC that is not there is removed.
func (v *VM) RemoveTapNIC(ctx context.Context, macAddr string) error {
	mac, err := net.ParseMAC(macAddr)
	if err != nil || len(mac) != 6 {
		return fmt.Errorf("remove tap nic: MAC %q: want six bytes", macAddr)
	}
	qc, err := v.running()
	if err != nil {
		return fmt.Errorf("remove tap nic %s: %w", mac, err)
	}
	netdev, device := tapIDs(mac)
	v.devMu.Lock()
	defer v.devMu.Unlock()
	deleted := qc.Subscribe(qmp.Named("DEVICE_DELETED", func(data json.RawMessage) bool {
		var ev struct {
			Device string `json:"device"`
		}
		return json.Unmarshal(data, &ev) == nil && ev.Device == device
	}))
	defer deleted.Close()
	err = qc.Execute(ctx, "device_del", map[string]string{"id": device}, nil)
	switch {
	case isClass(err, "DeviceNotFound"):
	case err != nil:
		return fmt.Errorf("remove tap nic %s: %w", mac, err)
	default:
		if _, err := deleted.Next(ctx); err != nil {
			return fmt.Errorf("remove tap nic %s: wait for DEVICE_DELETED: %w", mac, err)
		}
	}
	// QEMU answers a netdev it does not have with a GenericError.
	if err := qc.Execute(ctx, "netdev_del", map[string]string{"id": netdev}, nil); err != nil && !v.netdevGone(ctx, qc, netdev) {
		return fmt.Errorf("remove tap nic %s: %w", mac, err)
	}
	log.G(ctx).WithField("nic", netdev).Debug("tap nic removed")
	return nil
}

// netdevGone reports whether QEMU no longer has netdev id.
func (v *VM) netdevGone(ctx context.Context, qc *qmp.Client, id string) bool {
	ids, err := netdevs(ctx, qc)
	if err != nil {
		return false
	}
	for _, n := range ids {
		if n == id {
			return false
		}
	}
	return true
}

// Netdevs lists the ids of QEMU's network backends (HMP "info network";
// QMP has no query for them).
func (v *VM) Netdevs(ctx context.Context) ([]string, error) {
	qc, err := v.running()
	if err != nil {
		return nil, fmt.Errorf("list netdevs: %w", err)
	}
	return netdevs(ctx, qc)
}

func netdevs(ctx context.Context, qc *qmp.Client) ([]string, error) {
	var out string
	if err := qc.Execute(ctx, "human-monitor-command", map[string]string{"command-line": "info network"}, &out); err != nil {
		return nil, fmt.Errorf("list netdevs: %w", err)
	}
	return parseInfoNetwork(out), nil
}

// parseInfoNetwork picks the backends from "info network", whose lines
// are "<nic>: index=0,type=nic,..." with each backend under its NIC as
// " \ <netdev>: index=0,type=tap,..." (or unindented when no NIC uses it).
func parseInfoNetwork(out string) []string {
	var ids []string
	for _, line := range strings.Split(out, "\n") {
		name, rest, ok := strings.Cut(strings.TrimLeft(line, " \\\t"), ": ")
		if !ok || strings.Contains(rest, "type=nic") || !strings.Contains(rest, "type=") {
			continue
		}
		ids = append(ids, name)
	}
	return ids
}
