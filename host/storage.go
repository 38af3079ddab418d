package host

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/uvmgcs/gcs/protocol"
)

// Guest directories layer and scratch disks are mounted under when the
// caller names no MountPath (host/uvm's AddSCSI).
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
// the same guest path.
func diskID(d protocol.MappedVirtualDisk) string {
	id := fmt.Sprint(uint32(d.Controller)<<8 | uint32(d.Lun))
	if d.Partition != 0 {
		id += fmt.Sprintf("-%d", d.Partition)
	}
	return id
}

// LayerPath is where a read-only layer disk that names no MountPath is
// mounted: /run/layers/p<N>, N = controller*256 + LUN (and "-<partition>"
// for a partition).
func LayerPath(d protocol.MappedVirtualDisk) string {
	return LayerMountRoot + "/p" + diskID(d)
}

// ScratchPath is where a scratch disk that names no MountPath is
// mounted: /run/mounts/scsi/m<N>, N as in LayerPath.
func ScratchPath(d protocol.MappedVirtualDisk) string {
	return ScratchMountRoot + "/m" + diskID(d)
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
