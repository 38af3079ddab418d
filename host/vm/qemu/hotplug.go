//go:build linux

package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/sirupsen/logrus"

	"github.com/uvmgcs/gcs/host/qmp"
	"github.com/uvmgcs/gcs/host/vm"
	"github.com/uvmgcs/gcs/internal/log"
)

// maxLUN is the highest LUN a Disk can name; QEMU's virtio-scsi allows more.
const maxLUN = 255

// scsiDisk is one hot-added disk: its QEMU device and block node.
type scsiDisk struct {
	device, node string
}

// scsiNames names the device and node for lun. The device id is the LUN's
// (QEMU frees it at DEVICE_DELETED); the node name is new for every add, so
// a node that lingers after a failed blockdev-del cannot block the LUN.
func scsiNames(lun uint8, gen uint64) scsiDisk {
	return scsiDisk{
		device: fmt.Sprintf("%s-lun%d", scsiController, lun),
		node:   fmt.Sprintf("%s-lun%d-n%d", scsiController, lun, gen),
	}
}

// AddSCSIDisk implements vm.VM: blockdev-add of the file as a raw node, then
// device_add of a scsi-hd on controller 0 at the lowest free LUN. A failed
// device_add removes the node again.
func (v *VM) AddSCSIDisk(ctx context.Context, path string, readOnly bool) (vm.Disk, error) {
	qc, err := v.running()
	if err != nil {
		return vm.Disk{}, fmt.Errorf("add scsi disk %s: %w", path, err)
	}
	if _, err := os.Stat(path); err != nil {
		return vm.Disk{}, fmt.Errorf("add scsi disk: %w", err)
	}
	v.devMu.Lock()
	defer v.devMu.Unlock()
	lun, ok := v.freeLUN()
	if !ok {
		return vm.Disk{}, fmt.Errorf("add scsi disk %s: all %d LUNs of %s in use", path, maxLUN+1, scsiController)
	}
	v.diskGen++
	d := scsiNames(lun, v.diskGen)
	logger := log.G(ctx).WithFields(logrus.Fields{"lun": lun, "path": path, "read-only": readOnly})

	node := map[string]any{
		"node-name": d.node,
		"driver":    "raw",
		"read-only": readOnly,
		"file":      map[string]any{"driver": "file", "filename": path},
	}
	if err := qc.Execute(ctx, "blockdev-add", node, nil); err != nil {
		return vm.Disk{}, fmt.Errorf("add scsi disk %s: %w", path, err)
	}
	dev := map[string]any{
		"driver":  "scsi-hd",
		"id":      d.device,
		"bus":     scsiController + ".0",
		"drive":   d.node,
		"channel": 0,
		"scsi-id": 0,
		"lun":     lun,
	}
	if err := qc.Execute(ctx, "device_add", dev, nil); err != nil {
		if derr := qc.Execute(context.WithoutCancel(ctx), "blockdev-del", map[string]string{"node-name": d.node}, nil); derr != nil {
			logger.WithError(derr).Warn("remove block node after failed device_add")
		}
		return vm.Disk{}, fmt.Errorf("add scsi disk %s: %w", path, err)
	}
	v.luns[lun] = d
	logger.Debug("scsi disk added")
	return vm.Disk{Controller: 0, LUN: lun}, nil
}

// freeLUN returns the lowest LUN not in use. Call with devMu held.
func (v *VM) freeLUN() (uint8, bool) {
	for lun := 0; lun <= maxLUN; lun++ {
		if _, used := v.luns[uint8(lun)]; !used {
			return uint8(lun), true
		}
	}
	return 0, false
}

// RemoveSCSIDisk implements vm.VM: device_del, wait for QEMU's
// DEVICE_DELETED for the device, then blockdev-del. A disk QEMU no longer
// has counts as removed.
func (v *VM) RemoveSCSIDisk(ctx context.Context, d vm.Disk) error {
	qc, err := v.running()
	if err != nil {
		return fmt.Errorf("remove scsi disk %d:%d: %w", d.Controller, d.LUN, err)
	}
	v.devMu.Lock()
	defer v.devMu.Unlock()
	disk, ok := v.luns[d.LUN]
	if d.Controller != 0 || !ok {
		log.G(ctx).WithField("disk", d).Debug("remove scsi disk: not attached")
		return nil
	}

	if err := v.deleteDevice(ctx, qc, disk.device); err != nil {
		return fmt.Errorf("remove scsi disk %d:%d: %w", d.Controller, d.LUN, err)
	}
	// The device is gone; from here on the LUN is free whatever happens.
	delete(v.luns, d.LUN)
	if err := qc.Execute(ctx, "blockdev-del", map[string]string{"node-name": disk.node}, nil); err != nil {
		if exists, qerr := nodeExists(ctx, qc, disk.node); qerr != nil || exists {
			return fmt.Errorf("remove scsi disk %d:%d: %w", d.Controller, d.LUN, err)
		}
	}
	log.G(ctx).WithField("disk", d).Debug("scsi disk removed")
	return nil
}

// deleteDevice has QEMU unplug device id and waits for its
// DEVICE_DELETED; a device QEMU does not have is deleted.
func (v *VM) deleteDevice(ctx context.Context, qc *qmp.Client, id string) error {
	deleted := qc.Subscribe(qmp.Named("DEVICE_DELETED", func(data json.RawMessage) bool {
		var ev struct {
			Device string `json:"device"`
		}
		return json.Unmarshal(data, &ev) == nil && ev.Device == id
	}))
	defer deleted.Close()
	err := qc.Execute(ctx, "device_del", map[string]string{"id": id}, nil)
	switch {
	case isClass(err, "DeviceNotFound"):
		return nil
	case err != nil:
		return err
	}
	if _, err := deleted.Next(ctx); err != nil {
		return fmt.Errorf("wait for DEVICE_DELETED of %s: %w", id, err)
	}
	return nil
}

// nodeExists reports whether QEMU has a block node called name.
func nodeExists(ctx context.Context, qc *qmp.Client, name string) (bool, error) {
	var nodes []struct {
		NodeName string `json:"node-name"`
	}
	if err := qc.Execute(ctx, "query-named-block-nodes", map[string]bool{"flat": true}, &nodes); err != nil {
		return false, err
	}
	for _, n := range nodes {
		if n.NodeName == name {
			return true, nil
		}
	}
	return false, nil
}

// pmemAlign is the size a pmem device's backing file is padded to.
const pmemAlign = 2 << 20

// AddPMem implements vm.VM: a memory-backend-file over the whole file
// (shared, so that the guest sees the file; read-only where this QEMU
// supports it) and a virtio-pmem-pci device on it. Devices are numbered in
// the order added; QEMU cannot hot-remove them.
func (v *VM) AddPMem(ctx context.Context, path string) (uint32, error) {
	if v.opts.Machine == MachineMicroVM {
		return 0, fmt.Errorf("add pmem %s: the microvm machine has no memory slots: %w", path, errors.ErrUnsupported)
	}
	qc, err := v.running()
	if err != nil {
		return 0, fmt.Errorf("add pmem %s: %w", path, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return 0, fmt.Errorf("add pmem: %w", err)
	}
	if st.Size() == 0 {
		return 0, fmt.Errorf("add pmem %s: file is empty", path)
	}
	// The guest maps a pmem device in whole 2 MiB subsections and refuses
	// a misaligned one: pad the file (sparse; past its data and any
	// hash tree, so nothing reads the padding).
	size := st.Size()
	if rem := size % pmemAlign; rem != 0 {
		size += pmemAlign - rem
		if err := os.Truncate(path, size); err != nil {
			return 0, fmt.Errorf("add pmem: pad %s to %d bytes: %w", path, size, err)
		}
	}
	v.devMu.Lock()
	defer v.devMu.Unlock()
	n := v.pmems
	memID, devID := fmt.Sprintf("pmem%d-mem", n), fmt.Sprintf("pmem%d", n)
	logger := log.G(ctx).WithFields(logrus.Fields{"pmem": n, "path": path})

	backend := map[string]any{
		"qom-type": "memory-backend-file",
		"id":       memID,
		"mem-path": path,
		"size":     size,
		"share":    true,
		"readonly": true,
	}
	err = qc.Execute(ctx, "object-add", backend, nil)
	if isClass(err, "GenericError") {
		// An older QEMU without the readonly property: map it writable.
		logger.WithError(err).Debug("read-only pmem backend refused; retrying writable")
		delete(backend, "readonly")
		err = qc.Execute(ctx, "object-add", backend, nil)
	}
	if err != nil {
		return 0, fmt.Errorf("add pmem %s: %w", path, err)
	}
	dev := map[string]any{"driver": "virtio-pmem-pci", "id": devID, "memdev": memID}
	if err := qc.Execute(ctx, "device_add", dev, nil); err != nil {
		if derr := qc.Execute(context.WithoutCancel(ctx), "object-del", map[string]string{"id": memID}, nil); derr != nil {
			logger.WithError(derr).Warn("remove pmem backend after failed device_add")
		}
		return 0, fmt.Errorf("add pmem %s: %w", path, err)
	}
	v.pmems++
	logger.Debug("pmem added")
	return n, nil
}

// isClass reports whether err carries a QMP error of the given class.
func isClass(err error, class string) bool {
	var qe *qmp.Error
	return errors.As(err, &qe) && qe.Class == class
}

// BlockFiles lists the files behind the block devices QEMU has (its
// query-block, not this driver's tables): what is really attached.
func (v *VM) BlockFiles(ctx context.Context) ([]string, error) {
	qc, err := v.running()
	if err != nil {
		return nil, err
	}
	var blocks []struct {
		Inserted *struct {
			File string `json:"file"`
		} `json:"inserted"`
	}
	if err := qc.Execute(ctx, "query-block", nil, &blocks); err != nil {
		return nil, err
	}
	var files []string
	for _, b := range blocks {
		if b.Inserted != nil {
			files = append(files, b.Inserted.File)
		}
	}
	return files, nil
}
