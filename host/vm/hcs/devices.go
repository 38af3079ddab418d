package hcs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sirupsen/logrus"

	"github.com/uvmgcs/gcs/host/vm"
	"github.com/uvmgcs/gcs/internal/log"
	"github.com/uvmgcs/gcs/protocol"
)

// AddSCSIDisk implements vm.VM: grant the VM's worker process access to
// the file, then attach it at the lowest free LUN of controller 0 with an
// "Add" modify request. The file must be a VHD or VHDX: HCS attaches
// virtual disks, not raw images.
func (v *VM) AddSCSIDisk(ctx context.Context, path string, readOnly bool) (vm.Disk, error) {
	h, err := v.running()
	if err != nil {
		return vm.Disk{}, fmt.Errorf("add scsi disk %s: %w", path, err)
	}
	path, err = hostFile(path)
	if err != nil {
		return vm.Disk{}, fmt.Errorf("add scsi disk: %w", err)
	}
	v.devMu.Lock()
	defer v.devMu.Unlock()
	lun, ok := v.freeLUN()
	if !ok {
		return vm.Disk{}, fmt.Errorf("add scsi disk %s: all %d LUNs of controller 0 in use", path, lunsPerController)
	}
	d := vm.Disk{Controller: 0, LUN: lun}
	if err := v.grant(path); err != nil {
		return vm.Disk{}, fmt.Errorf("add scsi disk %s: %w", path, err)
	}
	if err := v.modify(ctx, h, addSCSIRequest(d, path, readOnly)); err != nil {
		return vm.Disk{}, fmt.Errorf("add scsi disk %s: %w", path, err)
	}
	v.luns[lun] = path
	log.G(ctx).WithFields(logrus.Fields{"disk": d, "path": path, "read-only": readOnly}).Debug("scsi disk added")
	return d, nil
}

// freeLUN returns the lowest LUN of controller 0 not in use. Call with
// devMu held.
func (v *VM) freeLUN() (uint8, bool) {
	for lun := range lunsPerController {
		if _, used := v.luns[uint8(lun)]; !used {
			return uint8(lun), true
		}
	}
	return 0, false
}

// RemoveSCSIDisk implements vm.VM: a "Remove" modify request for the LUN,
// which returns once HCS has detached the disk. A disk this VM did not
// add, or that HCS no longer has, counts as removed.
func (v *VM) RemoveSCSIDisk(ctx context.Context, d vm.Disk) error {
	h, err := v.running()
	if err != nil {
		return fmt.Errorf("remove scsi disk %d:%d: %w", d.Controller, d.LUN, err)
	}
	v.devMu.Lock()
	defer v.devMu.Unlock()
	if _, ok := v.luns[d.LUN]; d.Controller != 0 || !ok {
		log.G(ctx).WithField("disk", d).Debug("remove scsi disk: not attached")
		return nil
	}
	err = v.modify(ctx, h, removeSCSIRequest(d))
	if err != nil && !errors.Is(err, protocol.HrNotFound) {
		return fmt.Errorf("remove scsi disk %d:%d: %w", d.Controller, d.LUN, err)
	}
	delete(v.luns, d.LUN)
	log.G(ctx).WithField("disk", d).Debug("scsi disk removed")
	return nil
}

// AddPMem implements vm.VM: grant access to the file, then back the next
// VPMem device with it, read-only. The file must be a fixed VHD (the raw
// image with a VHD footer); the guest sees device n as /dev/pmem<n>.
func (v *VM) AddPMem(ctx context.Context, path string) (uint32, error) {
	h, err := v.running()
	if err != nil {
		return 0, fmt.Errorf("add pmem %s: %w", path, err)
	}
	path, err = hostFile(path)
	if err != nil {
		return 0, fmt.Errorf("add pmem: %w", err)
	}
	v.devMu.Lock()
	defer v.devMu.Unlock()
	n := v.pmems
	if n >= uint32(v.opts.VPMemDevices) {
		return 0, fmt.Errorf("add pmem %s: all %d VPMem devices in use", path, v.opts.VPMemDevices)
	}
	if err := v.grant(path); err != nil {
		return 0, fmt.Errorf("add pmem %s: %w", path, err)
	}
	if err := v.modify(ctx, h, addVPMemRequest(n, path)); err != nil {
		return 0, fmt.Errorf("add pmem %s: %w", path, err)
	}
	v.pmems++
	log.G(ctx).WithFields(logrus.Fields{"device": n, "path": path}).Debug("pmem added")
	return n, nil
}

// hostFile is path made absolute, after checking it is a regular file.
func hostFile(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	st, err := os.Stat(abs)
	if err != nil {
		return "", err
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", abs)
	}
	return abs, nil
}

// grant lets the VM's worker process open path.
func (v *VM) grant(path string) error {
	return callError("GrantVmAccess", v.opts.ID, v.api.GrantVmAccess(v.opts.ID, path), "")
}

// modify sends one modify request and waits for it to complete.
func (v *VM) modify(ctx context.Context, h handle, req *ModifySettingRequest) error {
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	return v.call(ctx, "HcsModifyComputeSystem", notifySystemModifyCompleted, func() (string, error) {
		return v.api.ModifyComputeSystem(h, string(b))
	})
}
