package uvm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	pathpkg "path"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/uvmgcs/gcs/host"
	"github.com/uvmgcs/gcs/protocol"
)

// pmemState is a VPMem device mounted in the guest.
type pmemState struct {
	Path   string
	Device protocol.VPMemDevice
}

// PMemOptions say how AddPMem mounts a device.
type PMemOptions struct {
	// MountPath is where the guest mounts it; /run/layers/pmem<N> if empty.
	MountPath string
	// VerityInfo has the guest check it with dm-verity.
	VerityInfo *protocol.VerityInfo
}

// AddPMem attaches the file at path as a read-only VPMem device and
// mounts it in the guest (a layer), or takes another reference to the
// device that holds it. Release unmounts it; QEMU cannot unplug a pmem
// device, so its slot stays taken until the VM stops.
func (u *UVM) AddPMem(ctx context.Context, path string, o PMemOptions) (*Resource, error) {
	abs, err := filepath.Abs(path)
	if err != nil || path == "" {
		return nil, fmt.Errorf("pmem %q: %w", path, errdefs.ErrInvalidArgument)
	}
	return u.acquire(ctx, kindPMem+":"+abs, kindPMem, true, func(ctx context.Context, r *resource) error {
		n, err := u.m.AddPMem(ctx, abs)
		if err != nil {
			return fmt.Errorf("attach %s: %w", abs, err)
		}
		d := protocol.VPMemDevice{DeviceNumber: n, MountPath: o.MountPath, VerityInfo: o.VerityInfo}
		if d.MountPath == "" {
			d.MountPath = fmt.Sprintf("%s/pmem%d", host.LayerMountRoot, n)
		}
		if err := u.gc.AddVPMemDevice(ctx, d); err != nil {
			return fmt.Errorf("mount %s at %s: %w", abs, d.MountPath, err)
		}
		r.PMem, r.GuestPath = &pmemState{Path: abs, Device: d}, d.MountPath
		return nil
	})
}

func (u *UVM) removePMem(ctx context.Context, r *resource) error {
	if r.PMem == nil {
		return nil
	}
	if err := u.gc.RemoveVPMemDevice(ctx, r.PMem.Device); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("unmount %s: %w", r.PMem.Device.MountPath, err)
	}
	return nil
}

// A Sharer offers host directories to the guest. It is the pluggable part
// of a share: a Plan9 server on a port of the agent channel (Plan9, the
// default), or virtio-9p tags a driver set up at boot (Tags).
type Sharer interface {
	// Share offers the directory at hostPath to the guest behind gc and
	// returns how the guest mounts it (the UVM sets MountPath and
	// ReadOnly) and a function that stops offering it, called after the
	// guest has unmounted it.
	Share(ctx context.Context, gc *host.GuestConnection, hostPath string, readOnly bool) (protocol.MappedDirectory, func(context.Context) error, error)
}

// Plan9 is the Sharer that serves each directory with a 9p server on a
// fresh port of the agent channel, which the guest dials and mounts
// (hcsshim's Plan9 share; host/plan9). It works on every driver; the
// server lives in this process, so a share ends with it.
type Plan9 struct{}

// Share implements Sharer.
func (Plan9) Share(_ context.Context, gc *host.GuestConnection, hostPath string, readOnly bool) (protocol.MappedDirectory, func(context.Context) error, error) {
	d, stop, err := gc.ServeDirectory(hostPath, readOnly)
	if err != nil {
		return d, nil, err
	}
	return d, func(context.Context) error { stop(); return nil }, nil
}

// Tags is the Sharer for directories a driver offers at boot under
// virtio-9p tags (qemu.Options.Shares): host directory → tag.
type Tags map[string]string

// Share implements Sharer.
func (t Tags) Share(_ context.Context, _ *host.GuestConnection, hostPath string, _ bool) (protocol.MappedDirectory, func(context.Context) error, error) {
	tag, ok := t[filepath.Clean(hostPath)]
	if !ok {
		return protocol.MappedDirectory{}, nil, fmt.Errorf("%s is not shared with the VM at boot: %w", hostPath, errdefs.ErrNotFound)
	}
	return protocol.MappedDirectory{ShareName: tag}, func(context.Context) error { return nil }, nil
}

// ShareMountRoot is where the guest mounts shared directories.
const ShareMountRoot = "/run/mounts/share"

// shareState is a shared directory mounted in the guest.
type shareState struct {
	Path  string
	Mount protocol.MappedDirectory
}

// AddShare offers the host directory at path to the guest through the
// UVM's Sharer (Plan9 unless Options.Sharer says otherwise) and mounts it
// there (read-only when readOnly), or takes another reference to that
// mount.
func (u *UVM) AddShare(ctx context.Context, path string, readOnly bool) (*Resource, error) {
	abs, err := filepath.Abs(path)
	if err != nil || path == "" {
		return nil, fmt.Errorf("share %q: %w", path, errdefs.ErrInvalidArgument)
	}
	key := fmt.Sprintf("%s:%s:ro=%t", kindShare, abs, readOnly)
	sum := sha256.Sum256([]byte(key))
	return u.addShare(ctx, key, true, abs, ShareMountRoot+"/"+hex.EncodeToString(sum[:8]), readOnly)
}

// AddShareAt offers the host directory at path to the guest like
// AddShare, mounted at the fixed guestPath (a container's root that is a
// host directory, at RootPath). It has one holder: a second share at
// guestPath is errdefs.ErrAlreadyExists.
func (u *UVM) AddShareAt(ctx context.Context, path, guestPath string, readOnly bool) (*Resource, error) {
	abs, err := filepath.Abs(path)
	if err != nil || path == "" {
		return nil, fmt.Errorf("share %q: %w", path, errdefs.ErrInvalidArgument)
	}
	if !strings.HasPrefix(guestPath, "/") || pathpkg.Clean(guestPath) != guestPath || guestPath == "/" {
		return nil, fmt.Errorf("share %s at guest path %q: want a clean absolute path: %w", abs, guestPath, errdefs.ErrInvalidArgument)
	}
	return u.addShare(ctx, kindShare+"@"+guestPath, false, abs, guestPath, readOnly)
}

// addShare offers abs and mounts it at guestPath under key.
func (u *UVM) addShare(ctx context.Context, key string, shared bool, abs, guestPath string, readOnly bool) (*Resource, error) {
	sharer := u.opts.Sharer
	if sharer == nil {
		sharer = Plan9{}
	}
	return u.acquire(ctx, key, kindShare, shared, func(ctx context.Context, r *resource) error {
		md, unshare, err := sharer.Share(ctx, u.gc, abs, readOnly)
		if err != nil {
			return fmt.Errorf("share %s: %w", abs, err)
		}
		md.MountPath = guestPath
		md.ReadOnly = readOnly
		if err := u.gc.AddMappedDirectory(ctx, md); err != nil {
			if uerr := unshare(context.WithoutCancel(ctx)); uerr != nil {
				err = fmt.Errorf("%w (and stop sharing: %v)", err, uerr)
			}
			return fmt.Errorf("mount share %s at %s: %w", abs, md.MountPath, err)
		}
		r.Share, r.GuestPath, r.hostUndo = &shareState{Path: abs, Mount: md}, md.MountPath, unshare
		return nil
	})
}

// removeShare unmounts the share in the guest, then stops offering it
// (when this process offered it: a Plan9 server dies with its process).
func (u *UVM) removeShare(ctx context.Context, r *resource) error {
	if r.Share == nil {
		return nil
	}
	if err := u.gc.RemoveMappedDirectory(ctx, r.Share.Mount); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("unmount share %s: %w", r.Share.Mount.MountPath, err)
	}
	if r.hostUndo != nil {
		return r.hostUndo(ctx)
	}
	return nil
}

// A NICPlugger plugs a network adapter into the machine, in the way of
// its driver ((*qemu.VM).AddNIC for QEMU's user network), and returns its
// MAC address and a function that unplugs it (nil when the driver cannot).
type NICPlugger func(ctx context.Context) (mac string, unplug func(context.Context) error, err error)

// nicState is an adapter configured in the guest.
type nicState struct {
	Adapter protocol.NetworkAdapter
}

// AddNIC plugs a NIC with plug and has the guest move it into network
// namespace a.NamespaceID and configure it as a says (its MacAddress is
// the plugged NIC's). Release returns it from the namespace, then unplugs
// it. a.ID names the adapter and must be unique in the UVM.
func (u *UVM) AddNIC(ctx context.Context, plug NICPlugger, a protocol.NetworkAdapter) (*Resource, error) {
	if a.ID == "" || plug == nil {
		return nil, fmt.Errorf("nic: an adapter ID and a plugger are required: %w", errdefs.ErrInvalidArgument)
	}
	return u.acquire(ctx, kindNIC+":"+a.ID, kindNIC, false, func(ctx context.Context, r *resource) error {
		mac, unplug, err := plug(ctx)
		if err != nil {
			return fmt.Errorf("plug nic %s: %w", a.ID, err)
		}
		a.MacAddress = mac
		if err := u.gc.AddNetworkAdapter(ctx, a); err != nil {
			if unplug != nil {
				if uerr := unplug(context.WithoutCancel(ctx)); uerr != nil {
					err = fmt.Errorf("%w (and unplug: %v)", err, uerr)
				}
			}
			return fmt.Errorf("configure nic %s: %w", a.ID, err)
		}
		r.NIC, r.hostUndo = &nicState{Adapter: a}, unplug
		return nil
	})
}

func (u *UVM) removeNIC(ctx context.Context, r *resource) error {
	if r.NIC == nil {
		return nil
	}
	if err := u.gc.RemoveNetworkAdapter(ctx, r.NIC.Adapter); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("remove nic %s: %w", r.NIC.Adapter.ID, err)
	}
	if r.hostUndo != nil {
		return r.hostUndo(ctx)
	}
	return nil
}
