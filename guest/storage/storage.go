// Package storage owns the guest's storage resources as the host modifies
// them on the utility VM: it decodes each ModifySettings request and hands
// it to the package that owns that kind (scsi for disks, pmem for VPMem
// layers, overlay for combined layers, share for 9p shares), all recording their mounts in one
// reference-counted table so shutdown can unwind them in order.
package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"

	"github.com/uvmgcs/gcs/guest/storage/dm"
	"github.com/uvmgcs/gcs/guest/storage/mounts"
	"github.com/uvmgcs/gcs/guest/storage/overlay"
	"github.com/uvmgcs/gcs/guest/storage/pmem"
	"github.com/uvmgcs/gcs/guest/storage/scsi"
	"github.com/uvmgcs/gcs/guest/storage/share"
	"github.com/uvmgcs/gcs/internal/log"
	"github.com/uvmgcs/gcs/protocol"
	"github.com/uvmgcs/gcs/transport"
)

// Config says where the Manager finds devices and where it may mount.
type Config struct {
	// SysRoot is sysfs ("/sys" in the guest).
	SysRoot string
	// DevRoot holds device nodes ("/dev" in the guest).
	DevRoot string
	// AllowedRoots are the directories every guest path the host names
	// must lie beneath (mounts.DefaultRoots() if empty); relative ones are
	// taken from the working directory.
	AllowedRoots []string
	// SCSIHosts, when not nil, maps SCSI controller indices to guest SCSI
	// host numbers instead of discovering them (see scsi.ControllerHosts).
	SCSIHosts map[uint8]uint32
	// DeviceTimeout bounds the wait for a disk or a VPMem device to
	// appear (scsi.DefaultTimeout and pmem.DefaultTimeout if 0).
	DeviceTimeout time.Duration
	// Dialer reaches the host's ports: a MappedDirectory with a Port is
	// 9p over a connection to it (nil: such shares are refused).
	Dialer transport.Dialer
}

// Manager serves ModifySettings for storage on the utility VM. It is safe
// for concurrent use.
type Manager struct {
	table  *mounts.Table
	disks  *scsi.Disks
	pmem   *pmem.Devices
	shares *share.Shares
	layers *overlay.Layers
}

// New returns a Manager for cfg.
func New(cfg Config) (*Manager, error) {
	if cfg.SysRoot == "" || cfg.DevRoot == "" {
		return nil, fmt.Errorf("storage: SysRoot and DevRoot are required: %w", protocol.HrInvalidArg)
	}
	roots := make([]string, 0, len(cfg.AllowedRoots))
	for _, r := range cfg.AllowedRoots {
		abs, err := filepath.Abs(r)
		if err != nil {
			return nil, fmt.Errorf("storage: allowed root %q: %w", r, err)
		}
		roots = append(roots, abs)
	}
	table, err := mounts.New(roots)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	loc := scsi.NewLocator(scsi.Config{
		SysRoot: cfg.SysRoot,
		DevRoot: cfg.DevRoot,
		Hosts:   cfg.SCSIHosts,
		Timeout: cfg.DeviceTimeout,
	})
	mapper := dm.New(dm.Config{DevRoot: cfg.DevRoot, SysRoot: cfg.SysRoot})
	pmemLoc := pmem.NewLocator(pmem.Config{
		SysRoot: cfg.SysRoot,
		DevRoot: cfg.DevRoot,
		Timeout: cfg.DeviceTimeout,
	})
	return &Manager{
		table:  table,
		disks:  scsi.NewDisksWithMapper(loc, table, mapper),
		pmem:   pmem.New(pmemLoc, mapper, table),
		shares: share.New(table, cfg.Dialer),
		layers: overlay.NewLayers(table),
	}, nil
}

// Refs returns how many requests hold the mount at target (0: none).
func (m *Manager) Refs(target string) int { return m.table.Refs(target) }

// Close unmounts everything still mounted, the most recent first.
func (m *Manager) Close(ctx context.Context) error {
	if err := m.table.UnwindAll(ctx); err != nil {
		log.G(ctx).WithError(err).Warn("storage: unwinding mounts")
		return err
	}
	return nil
}

// Request types; an empty one means Add.
const (
	requestAdd    = "Add"
	requestRemove = "Remove"
	requestUpdate = "Update"
)

// Modify serves one ModifySettings request on the utility VM. Resource
// types that are not storage answer HrNotImpl.
func (m *Manager) Modify(ctx context.Context, req protocol.ModificationRequest) error {
	op := req.RequestType
	if op == "" {
		op = requestAdd
	}
	if op != requestAdd && op != requestRemove && op != requestUpdate {
		return fmt.Errorf("%s: request type %q: %w", req.ResourceType, req.RequestType, protocol.HrInvalidArg)
	}
	switch req.ResourceType {
	case protocol.ResourceMappedVirtualDisk:
		var d protocol.MappedVirtualDisk
		if err := decode(req, &d); err != nil {
			return err
		}
		switch op {
		case requestAdd:
			return m.disks.Add(ctx, &d)
		case requestRemove:
			return m.disks.Remove(ctx, &d)
		}
	case protocol.ResourceSCSIDevice:
		var d protocol.SCSIDevice
		if err := decode(req, &d); err != nil {
			return err
		}
		if op == requestRemove {
			return m.disks.RemoveDevice(ctx, &d)
		}
	case protocol.ResourceMappedDirectory:
		var d protocol.MappedDirectory
		if err := decode(req, &d); err != nil {
			return err
		}
		switch op {
		case requestAdd:
			return m.shares.Add(ctx, &d)
		case requestRemove:
			return m.shares.Remove(ctx, &d)
		}
	case protocol.ResourceVPMemDevice:
		var d protocol.VPMemDevice
		if err := decode(req, &d); err != nil {
			return err
		}
		switch op {
		case requestAdd:
			return m.pmem.Add(ctx, &d)
		case requestRemove:
			return m.pmem.Remove(ctx, &d)
		}
	case protocol.ResourceCombinedLayers:
		var c protocol.CombinedLayers
		if err := decode(req, &c); err != nil {
			return err
		}
		switch op {
		case requestAdd:
			return m.layers.Add(ctx, &c)
		case requestRemove:
			return m.layers.Remove(ctx, &c)
		}
	}
	return fmt.Errorf("%s %s: %w", op, req.ResourceType, protocol.HrNotImpl)
}

// decode unmarshals req's settings into v.
func decode(req protocol.ModificationRequest, v any) error {
	if len(req.Settings) == 0 {
		return fmt.Errorf("%s: no settings: %w", req.ResourceType, protocol.HrInvalidArg)
	}
	if err := json.Unmarshal(req.Settings, v); err != nil {
		return fmt.Errorf("%s settings: %v: %w", req.ResourceType, err, protocol.HrVmcomputeInvalidJSON)
	}
	return nil
}
