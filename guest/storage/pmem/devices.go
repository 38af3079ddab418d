package pmem

import (
	"context"
	"fmt"

	"github.com/uvmgcs/gcs/guest/storage/dm"
	"github.com/uvmgcs/gcs/guest/storage/mounts"
	"github.com/uvmgcs/gcs/guest/storage/scsi"
	"github.com/uvmgcs/gcs/guest/storage/uevent"
	"github.com/uvmgcs/gcs/protocol"
)

// Devices serves VPMemDevice requests: it finds each device, stacks the
// device-mapper devices the request asks for, mounts the result read-only
// at the requested path, and counts the requests holding each path in a
// mount table it shares with the other storage kinds.
type Devices struct {
	loc    *Locator
	mapper *dm.Mapper
	table  *mounts.Table
}

// New returns Devices finding devices with loc, stacking device-mapper
// devices with mapper and recording mounts in table.
func New(loc *Locator, mapper *dm.Mapper, table *mounts.Table) *Devices {
	return &Devices{loc: loc, mapper: mapper, table: table}
}

// key describes what a request mounts, so the same request twice shares
// one mount and a different one at the same path is refused.
func key(d *protocol.VPMemDevice) string {
	k := "vpmem " + Name(d.DeviceNumber)
	if m := d.MappingInfo; m != nil {
		k += fmt.Sprintf(" bytes %d+%d", m.DeviceOffsetInBytes, m.DeviceSizeInBytes)
	}
	if v := d.VerityInfo; v != nil {
		k += " verity " + v.RootDigest
	}
	return k
}

// LinearName and VerityName are the names (before the Mapper's prefix) of
// the dm-linear and dm-verity devices a mount of device n at target sits
// on.
func LinearName(n uint32, target string) string {
	return dm.NameFor(Name(n)+"-linear", target)
}

// VerityName: see LinearName.
func VerityName(n uint32, target string) string {
	return dm.NameFor(Name(n)+"-verity", target)
}

// check refuses a slice or verity description that cannot be right for
// any device, before waiting for the device.
func check(d *protocol.VPMemDevice) error {
	if m := d.MappingInfo; m != nil {
		if _, err := dm.Linear(Name(d.DeviceNumber), m.DeviceOffsetInBytes, m.DeviceSizeInBytes); err != nil {
			return fmt.Errorf("vpmem %d mapping: %w", d.DeviceNumber, err)
		}
	}
	if v := d.VerityInfo; v != nil {
		if _, err := dm.VerityOf(Name(d.DeviceNumber), v); err != nil {
			return fmt.Errorf("vpmem %d: %w", d.DeviceNumber, err)
		}
	}
	return nil
}

// Add mounts VPMem device d.DeviceNumber read-only at d.MountPath. With
// MappingInfo the mount is of a dm-linear slice of the device (a device
// holding several layers); with VerityInfo the mount reads through a
// dm-verity device over the device or the slice, so every block is
// checked against the hash tree appended to the filesystem, and a root
// digest that does not match fails with an error wrapping dm.ErrVerity.
// The same request again takes another reference to the mount. A request
// without a MountPath is only waited for.
func (p *Devices) Add(ctx context.Context, d *protocol.VPMemDevice) error {
	if err := check(d); err != nil {
		return err
	}
	if d.MountPath == "" {
		_, err := p.loc.Find(ctx, d.DeviceNumber)
		return err
	}
	return p.table.Add(ctx, d.MountPath, key(d), func(ctx context.Context) (mounts.Undo, error) {
		dev, err := p.loc.Find(ctx, d.DeviceNumber)
		if err != nil {
			return nil, err
		}
		// A just-found pmem device may not be live yet.
		if err := uevent.WaitLive(dev); err != nil {
			return nil, err
		}
		return p.mount(ctx, d, dev)
	})
}

// mount stacks what d asks for on dev, innermost last: the slice, then
// verity over it, then the mount over that.
func (p *Devices) mount(ctx context.Context, d *protocol.VPMemDevice, dev string) (mounts.Undo, error) {
	use := func(ctx context.Context, dev string) (mounts.Undo, error) {
		return scsi.MountDevice(ctx, dev, d.MountPath, scsi.MountOptions{ReadOnly: true})
	}
	if v := d.VerityInfo; v != nil {
		mountIt := use
		use = func(ctx context.Context, dev string) (mounts.Undo, error) {
			return p.mapper.StackVerity(ctx, VerityName(d.DeviceNumber, d.MountPath), dev, v, mountIt)
		}
	}
	if m := d.MappingInfo; m != nil {
		return p.mapper.StackLinear(ctx, LinearName(d.DeviceNumber, d.MountPath), dev,
			m.DeviceOffsetInBytes, m.DeviceSizeInBytes, true, use)
	}
	return use(ctx, dev)
}

// Remove drops the reference Add took on d.MountPath; the last one
// unmounts it and removes the device-mapper devices beneath it.
func (p *Devices) Remove(ctx context.Context, d *protocol.VPMemDevice) error {
	if d.MountPath == "" {
		return nil
	}
	return p.table.Remove(ctx, d.MountPath)
}
