package main

import (
	"context"
	"encoding/json"
	"errors"

	"golang.org/x/sys/unix"

	"github.com/uvmgcs/gcs/guest/bridge"
	"github.com/uvmgcs/gcs/guest/kmod"
	"github.com/uvmgcs/gcs/internal/log"
	"github.com/uvmgcs/gcs/protocol"
)

// moduleLoading loads the kernel modules a resource needs before its owner
// serves it: the VM boots with only what talking to the host and an ext4
// container need, and pays for the rest the first time it is used.
type moduleLoading struct {
	next bridge.Resources
	kmod *kmod.Loader
}

// modulesFor names the modules beyond the boot set a request may need.
func modulesFor(req protocol.ModificationRequest) []string {
	switch req.ResourceType {
	case protocol.ResourceVPMemDevice:
		return []string{"nfit", "nd_pmem", "virtio_pmem", "dm_mod", "dm_verity", "erofs"}
	case protocol.ResourceMappedVirtualDisk:
		var d protocol.MappedVirtualDisk
		if json.Unmarshal(req.Settings, &d) == nil && d.VerityInfo != nil {
			return []string{"dm_mod", "dm_verity"}
		}
	case protocol.ResourceNetwork:
		return []string{"virtio_net"}
	case protocol.ResourceMappedDirectory:
		var d protocol.MappedDirectory
		if json.Unmarshal(req.Settings, &d) == nil && d.Port != 0 {
			return []string{"9pnet_fd", "9p"}
		}
		return []string{"9pnet_virtio", "9p", "virtiofs"}
	}
	return nil
}

func (r moduleLoading) load(ctx context.Context, mods []string) {
	if err := r.kmod.Load(mods...); err != nil {
		// The owner's own error will say what is missing.
		log.G(ctx).WithError(err).Warn("loading kernel modules")
	}
}

func (r moduleLoading) Modify(ctx context.Context, req protocol.ModificationRequest) error {
	if mods := modulesFor(req); len(mods) > 0 && req.RequestType != protocol.RequestTypeRemove {
		r.load(ctx, mods)
	}
	err := r.next.Modify(ctx, req)
	// A disk whose file system the kernel does not know yet (an erofs
	// layer): load it and try once more. A failed Add left nothing behind.
	if req.ResourceType == protocol.ResourceMappedVirtualDisk && errors.Is(err, unix.ENODEV) {
		r.load(ctx, []string{"erofs"})
		err = r.next.Modify(ctx, req)
	}
	return err
}
