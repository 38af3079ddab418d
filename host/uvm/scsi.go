package uvm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"

	"github.com/uvmgcs/gcs/host"
	"github.com/uvmgcs/gcs/host/vm"
	"github.com/uvmgcs/gcs/internal/log"
	"github.com/uvmgcs/gcs/protocol"
)

// SCSIOptions say how AddSCSI attaches and mounts a disk.
type SCSIOptions struct {
	// ReadOnly attaches and mounts the disk read-only; read-only disks of
	// one file are shared by every holder.
	ReadOnly bool
	// EnsureFilesystem has the guest format a blank disk (ext4).
	EnsureFilesystem bool
	// MountPath is where the guest mounts it; host.LayerPath (read-only)
	// or host.ScratchPath by its SCSI address if empty.
	MountPath string
	// Options are extra mount options.
	Options []string
	// VerityInfo has the guest check the disk with dm-verity.
	VerityInfo *protocol.VerityInfo
	// RemoveFile deletes the file once the disk is detached (a scratch
	// disk made for one container).
	RemoveFile bool
}

// scsiState is what a SCSI entry needs to be torn down.
type scsiState struct {
	Path       string
	Disk       vm.Disk
	RemoveFile bool `json:",omitempty"`
	// Mount is the guest's MappedVirtualDisk; nil once unmounted.
	Mount *protocol.MappedVirtualDisk `json:",omitempty"`
}

// AddSCSI attaches the file at path as a SCSI disk and mounts it in the
// guest, or, for a read-only disk that is attached already, takes another
// reference to that attachment and mount. A writable disk has one holder:
// adding it again is errdefs.ErrAlreadyExists. A step that fails undoes
// the ones before it.
func (u *UVM) AddSCSI(ctx context.Context, path string, o SCSIOptions) (*Resource, error) {
	abs, err := filepath.Abs(path)
	if err != nil || path == "" {
		return nil, fmt.Errorf("scsi disk %q: %w", path, errdefs.ErrInvalidArgument)
	}
	key := kindSCSI + ":" + abs
	return u.acquire(ctx, key, kindSCSI, o.ReadOnly, func(ctx context.Context, r *resource) error {
		return u.addSCSI(ctx, r, abs, o)
	})
}

func (u *UVM) addSCSI(ctx context.Context, r *resource, path string, o SCSIOptions) error {
	d, err := u.m.AddSCSIDisk(ctx, path, o.ReadOnly)
	if err != nil {
		return fmt.Errorf("attach %s: %w", path, err)
	}
	md := protocol.MappedVirtualDisk{
		Controller:       d.Controller,
		Lun:              d.LUN,
		ReadOnly:         o.ReadOnly,
		MountPath:        o.MountPath,
		EnsureFilesystem: o.EnsureFilesystem,
		Options:          o.Options,
		VerityInfo:       o.VerityInfo,
	}
	if md.MountPath == "" {
		if o.ReadOnly {
			md.MountPath = host.LayerPath(md)
		} else {
			md.MountPath = host.ScratchPath(md)
		}
	}
	r.SCSI = &scsiState{Path: path, Disk: d, RemoveFile: o.RemoveFile}
	if err := u.gc.AddSCSIDisk(ctx, md); err != nil {
		err = fmt.Errorf("mount %s at %s: %w", path, md.MountPath, err)
		if uerr := u.unplugSCSI(context.WithoutCancel(ctx), r.SCSI); uerr != nil {
			log.G(ctx).WithError(uerr).Warn("detach a disk that failed to mount")
			err = errors.Join(err, uerr)
		}
		return err
	}
	r.SCSI.Mount = &md
	r.GuestPath = md.MountPath
	return nil
}

// removeSCSI unmounts the disk in the guest, has the guest let go of the
// device, then unplugs it on the host.
func (u *UVM) removeSCSI(ctx context.Context, r *resource) error {
	s := r.SCSI
	if s == nil {
		return nil
	}
	if s.Mount != nil {
		if err := u.gc.RemoveSCSIDisk(ctx, *s.Mount); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("unmount %s: %w", s.Mount.MountPath, err)
		}
		u.mu.Lock() // the state file is written meanwhile
		s.Mount = nil
		u.mu.Unlock()
	}
	if err := u.unplugSCSI(ctx, s); err != nil {
		return err
	}
	if s.RemoveFile {
		if err := os.Remove(s.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
			log.G(ctx).WithError(err).Warn("remove a released disk's file")
		}
	}
	return nil
}

// unplugSCSI has the guest drop the device and the host unplug it.
func (u *UVM) unplugSCSI(ctx context.Context, s *scsiState) error {
	if err := u.gc.RemoveSCSIDevice(ctx, s.Disk.Controller, s.Disk.LUN); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("guest let go of disk %d:%d: %w", s.Disk.Controller, s.Disk.LUN, err)
	}
	if err := u.m.RemoveSCSIDisk(ctx, s.Disk); err != nil {
		return fmt.Errorf("detach %s: %w", s.Path, err)
	}
	return nil
}

// overlayState is a container root combined from layers in the guest.
type overlayState struct {
	Combined protocol.CombinedLayers
}

// Combine has the guest mount an overlay of layers (guest paths, top
// first, e.g. Resources' GuestPath) at root, writable into scratch (a
// guest path) unless it is "". CreateContainer does this for a RootFS;
// callers that assemble a root from other resources (VPMem layers) use it
// and hand the result to the container (ContainerConfig.Hold).
func (u *UVM) Combine(ctx context.Context, root string, layers []string, scratch string) (*Resource, error) {
	c := protocol.CombinedLayers{ContainerRootPath: root, ScratchPath: scratch}
	for _, l := range layers {
		c.Layers = append(c.Layers, protocol.Layer{Path: l})
	}
	return u.acquire(ctx, kindOverlay+":"+root, kindOverlay, false, func(ctx context.Context, r *resource) error {
		if err := u.gc.CombineLayers(ctx, c); err != nil {
			return fmt.Errorf("combine %d layers at %s: %w", len(layers), root, err)
		}
		r.Overlay, r.GuestPath = &overlayState{Combined: c}, root
		return nil
	})
}

func (u *UVM) removeOverlay(ctx context.Context, r *resource) error {
	if r.Overlay == nil {
		return nil
	}
	if err := u.gc.RemoveCombinedLayers(ctx, r.Overlay.Combined); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("unmount the overlay at %s: %w", r.Overlay.Combined.ContainerRootPath, err)
	}
	return nil
}
