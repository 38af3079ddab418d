package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/uvmgcs/gcs/protocol"
)

// Guest directories MountLayerStack mounts disks under when the caller
// names no MountPath.
const (
	LayerMountRoot   = "/run/layers"
	ScratchMountRoot = "/run/mounts/scsi"
)

// modifyUVM sends a ModifySettings of resource on the utility VM.
func (gc *GuestConnection) modifyUVM(ctx context.Context, resource, op string, settings any) error {
	b, err := json.Marshal(settings)
	if err != nil {
		return fmt.Errorf("%s settings: %w", resource, err)
	}
	return gc.Modify(ctx, protocol.UVMContainerID, protocol.ModificationRequest{
		ResourceType: resource,
		RequestType:  op,
		Settings:     b,
	})
}

// AddSCSIDisk has the guest mount (or, with BlockDev, link) the SCSI disk
// at d's controller and LUN at d.MountPath. Adding the same disk at the
// same path again takes another reference to the one mount.
func (gc *GuestConnection) AddSCSIDisk(ctx context.Context, d protocol.MappedVirtualDisk) error {
	return gc.modifyUVM(ctx, protocol.ResourceMappedVirtualDisk, "Add", d)
}

// RemoveSCSIDisk drops a reference AddSCSIDisk took; the guest unmounts
// the disk with the last one.
func (gc *GuestConnection) RemoveSCSIDisk(ctx context.Context, d protocol.MappedVirtualDisk) error {
	return gc.modifyUVM(ctx, protocol.ResourceMappedVirtualDisk, "Remove", d)
}

// RemoveSCSIDevice has the guest let go of the SCSI device at (controller,
// lun): send it before unplugging the disk.
func (gc *GuestConnection) RemoveSCSIDevice(ctx context.Context, controller, lun uint8) error {
	return gc.modifyUVM(ctx, protocol.ResourceSCSIDevice, "Remove", protocol.SCSIDevice{Controller: controller, Lun: lun})
}

// CombineLayers has the guest mount an overlay of c.Layers (the first on
// top) at c.ContainerRootPath, writable into c.ScratchPath when it is set.
func (gc *GuestConnection) CombineLayers(ctx context.Context, c protocol.CombinedLayers) error {
	return gc.modifyUVM(ctx, protocol.ResourceCombinedLayers, "Add", c)
}

// RemoveCombinedLayers drops a reference CombineLayers took; the guest
// unmounts the overlay with the last one.
func (gc *GuestConnection) RemoveCombinedLayers(ctx context.Context, c protocol.CombinedLayers) error {
	return gc.modifyUVM(ctx, protocol.ResourceCombinedLayers, "Remove", c)
}

// diskID numbers a disk by its SCSI address, so the same disk always gets
// the same guest path and two containers sharing a layer share its mount.
func diskID(d protocol.MappedVirtualDisk) string {
	id := fmt.Sprint(uint32(d.Controller)<<8 | uint32(d.Lun))
	if d.Partition != 0 {
		id += fmt.Sprintf("-%d", d.Partition)
	}
	return id
}

// LayerPath is where MountLayerStack mounts a layer disk that names no
// MountPath: /run/layers/p<N>, N = controller*256 + LUN (and "-<partition>"
// for a partition).
func LayerPath(d protocol.MappedVirtualDisk) string {
	return LayerMountRoot + "/p" + diskID(d)
}

// ScratchPath is where MountLayerStack mounts a scratch disk that names no
// MountPath: /run/mounts/scsi/m<N>, N as in LayerPath.
func ScratchPath(d protocol.MappedVirtualDisk) string {
	return ScratchMountRoot + "/m" + diskID(d)
}

// MountLayerStack mounts each layer disk read-only (at its MountPath, or
// LayerPath), the scratch disk read-write (at its MountPath, or
// ScratchPath) when there is one, and combines them at rootPath, layers[0]
// on top. cleanup undoes it all in reverse order. On error nothing it
// mounted is left mounted.
func (gc *GuestConnection) MountLayerStack(ctx context.Context, layers []protocol.MappedVirtualDisk, scratch *protocol.MappedVirtualDisk, rootPath string) (cleanup func(ctx context.Context) error, err error) {
	var undo []func(context.Context) error
	unwind := func(ctx context.Context) error {
		var errs []error
		for i := len(undo) - 1; i >= 0; i-- {
			if err := undo[i](ctx); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
	defer func() {
		if err != nil {
			if cerr := unwind(context.WithoutCancel(ctx)); cerr != nil {
				gc.log.WithError(cerr).Warn("unwinding a layer stack that failed to mount")
			}
		}
	}()
	mount := func(d protocol.MappedVirtualDisk) error {
		if err := gc.AddSCSIDisk(ctx, d); err != nil {
			return fmt.Errorf("mount disk %d:%d at %s: %w", d.Controller, d.Lun, d.MountPath, err)
		}
		undo = append(undo, func(ctx context.Context) error { return gc.RemoveSCSIDisk(ctx, d) })
		return nil
	}
	c := protocol.CombinedLayers{ContainerRootPath: rootPath}
	for _, d := range layers {
		d.ReadOnly = true
		if d.MountPath == "" {
			d.MountPath = LayerPath(d)
		}
		if err := mount(d); err != nil {
			return nil, err
		}
		c.Layers = append(c.Layers, protocol.Layer{Path: d.MountPath})
	}
	if scratch != nil {
		d := *scratch
		d.ReadOnly = false
		if d.MountPath == "" {
			d.MountPath = ScratchPath(d)
		}
		if err := mount(d); err != nil {
			return nil, err
		}
		c.ScratchPath = d.MountPath
	}
	if err := gc.CombineLayers(ctx, c); err != nil {
		return nil, fmt.Errorf("combine %d layers at %s: %w", len(c.Layers), rootPath, err)
	}
	undo = append(undo, func(ctx context.Context) error { return gc.RemoveCombinedLayers(ctx, c) })
	return unwind, nil
}

// AddVPMemDevice has the guest mount the VPMem device d.DeviceNumber
// read-only at d.MountPath (through a dm-linear slice with MappingInfo and
// dm-verity with VerityInfo).
func (gc *GuestConnection) AddVPMemDevice(ctx context.Context, d protocol.VPMemDevice) error {
	return gc.modifyUVM(ctx, protocol.ResourceVPMemDevice, protocol.RequestTypeAdd, d)
}

// RemoveVPMemDevice undoes AddVPMemDevice.
func (gc *GuestConnection) RemoveVPMemDevice(ctx context.Context, d protocol.VPMemDevice) error {
	return gc.modifyUVM(ctx, protocol.ResourceVPMemDevice, protocol.RequestTypeRemove, d)
}

// AddMappedDirectory has the guest mount the host directory shared under
// d.ShareName at d.MountPath.
func (gc *GuestConnection) AddMappedDirectory(ctx context.Context, d protocol.MappedDirectory) error {
	return gc.modifyUVM(ctx, protocol.ResourceMappedDirectory, protocol.RequestTypeAdd, d)
}

// RemoveMappedDirectory undoes AddMappedDirectory.
func (gc *GuestConnection) RemoveMappedDirectory(ctx context.Context, d protocol.MappedDirectory) error {
	return gc.modifyUVM(ctx, protocol.ResourceMappedDirectory, protocol.RequestTypeRemove, d)
}
