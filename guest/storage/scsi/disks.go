package scsi

import (
	"context"
	"fmt"
	"os/exec"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/uvmgcs/gcs/guest/storage/dm"
	"github.com/uvmgcs/gcs/guest/storage/mounts"
	"github.com/uvmgcs/gcs/guest/storage/uevent"
	"github.com/uvmgcs/gcs/protocol"
)

// Disks serves MappedVirtualDisk and SCSIDevice requests: it finds each
// disk, mounts or links it at the requested path, and counts the requests
// holding each path in a mount table it shares with the other storage
// kinds.
type Disks struct {
	loc    *Locator
	table  *mounts.Table
	mapper *dm.Mapper
}

// NewDisks returns Disks finding devices with loc, recording mounts in
// table, and stacking dm-verity with a Mapper on loc's device and sysfs
// roots.
func NewDisks(loc *Locator, table *mounts.Table) *Disks {
	return NewDisksWithMapper(loc, table, dm.New(dm.Config{DevRoot: loc.cfg.DevRoot, SysRoot: loc.cfg.SysRoot}))
}

// NewDisksWithMapper is NewDisks stacking dm-verity with mapper.
func NewDisksWithMapper(loc *Locator, table *mounts.Table, mapper *dm.Mapper) *Disks {
	return &Disks{loc: loc, table: table, mapper: mapper}
}

// key describes what a disk request mounts, so the same request twice
// shares one mount and a different one at the same path is refused.
func key(d *protocol.MappedVirtualDisk) string {
	k := fmt.Sprintf("scsi %d:%d partition %d (ro=%t blockdev=%t fs=%q options=%q)",
		d.Controller, d.Lun, d.Partition, d.ReadOnly, d.BlockDev, d.Filesystem, d.Options)
	if v := d.VerityInfo; v != nil {
		k += fmt.Sprintf(" verity %s", v.RootDigest)
	}
	return k
}

// Add finds the disk and mounts it at d.MountPath (or links it there, with
// BlockDev). A disk without a MountPath is only waited for. A read-only
// disk with VerityInfo is mounted through a dm-verity device, so every
// block read is checked against the hash tree; a root digest that does
// not match fails the mount with an error wrapping dm.ErrVerity.
//
// VerityInfo on a writable disk, and encrypted disks (dm-crypt, served by
// a later change), are errdefs.ErrNotImplemented. EnsureFilesystem is honoured when
// the disk already holds the filesystem asked for; formatting a blank disk
// needs mkfs, which the guest image does not carry, so that answers
// not implemented either.
func (s *Disks) Add(ctx context.Context, d *protocol.MappedVirtualDisk) error {
	switch {
	case d.Encrypted:
		return fmt.Errorf("encrypted SCSI disk: %w", errdefs.ErrNotImplemented)
	case d.VerityInfo != nil && !d.ReadOnly:
		// dm-verity devices are read-only; hcsshim's guest ignores
		// VerityInfo on a writable disk, this one refuses it.
		return fmt.Errorf("dm-verity on a writable SCSI disk: %w", errdefs.ErrNotImplemented)
	}
	if d.MountPath == "" {
		_, err := s.loc.Find(ctx, d.Controller, d.Lun, d.Partition)
		return err
	}
	return s.table.Add(ctx, d.MountPath, key(d), func(ctx context.Context) (mounts.Undo, error) {
		dev, err := s.loc.Find(ctx, d.Controller, d.Lun, d.Partition)
		if err != nil {
			return nil, err
		}
		// Whatever opens it next (mount, dm-verity's size probe) needs the
		// disk live, which a just-found one may not be yet.
		if err := uevent.WaitLive(dev); err != nil {
			return nil, err
		}
		use := func(ctx context.Context, dev string) (mounts.Undo, error) {
			if d.BlockDev {
				return LinkDevice(ctx, dev, d.MountPath)
			}
			if d.EnsureFilesystem {
				if err := ensureFilesystem(dev, d.Filesystem); err != nil {
					return nil, err
				}
			}
			return MountDevice(ctx, dev, d.MountPath, MountOptions{
				ReadOnly:   d.ReadOnly,
				Filesystem: d.Filesystem,
				Options:    d.Options,
			})
		}
		if d.VerityInfo == nil {
			return use(ctx, dev)
		}
		name := dm.NameFor(fmt.Sprintf("scsi%d-%d-%d-verity", d.Controller, d.Lun, d.Partition), d.MountPath)
		return s.mapper.StackVerity(ctx, name, dev, d.VerityInfo, use)
	})
}

// ensureFilesystem makes sure dev holds fs (ext4 if empty): a blank disk
// (no file system the superblock shows) is formatted with mke2fs (busybox's
// in the VM; the ext4 driver mounts its ext2); a disk holding something
// else is refused, never overwritten.
func ensureFilesystem(dev, fs string) error {
	if fs == "" {
		fs = Ext4
	}
	found, err := DetectFilesystem(dev)
	if err != nil {
		return err
	}
	switch {
	case found == fs:
		return nil
	case found != "":
		return fmt.Errorf("%s holds %s, not %s; it is not reformatted: %w", dev, found, fs, errdefs.ErrInvalidArgument)
	case fs != Ext4:
		return fmt.Errorf("formatting %s as %s: only ext4 can be made here: %w", dev, fs, errdefs.ErrNotImplemented)
	}
	out, err := exec.Command("mke2fs", "-F", dev).CombinedOutput()
	if err != nil {
		return fmt.Errorf("format %s: %v: %s", dev, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Remove drops the reference Add took on d.MountPath, unmounting the disk
// with the last one.
func (s *Disks) Remove(ctx context.Context, d *protocol.MappedVirtualDisk) error {
	if d.MountPath == "" {
		return nil
	}
	return s.table.Remove(ctx, d.MountPath)
}

// RemoveDevice makes the guest let go of a SCSI device the host is about
// to unplug.
func (s *Disks) RemoveDevice(ctx context.Context, d *protocol.SCSIDevice) error {
	return s.loc.Delete(d.Controller, d.Lun)
}
