// Package storage owns the guest's storage resources as the host modifies
// them on the utility VM: it hands each decoded request to the package that
// owns that kind (scsi for disks, pmem for VPMem layers, share for 9p
// shares, overlay for combined layers), all recording their mounts in one
// reference-counted table so shutdown can unwind them in order.
package storage

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
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
		return nil, fmt.Errorf("storage: SysRoot and DevRoot are required: %w", errdefs.ErrInvalidArgument)
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

// AddDisk mounts (or links) a SCSI disk.
func (m *Manager) AddDisk(ctx context.Context, d *protocol.MappedVirtualDisk) error {
	return m.disks.Add(ctx, d)
}

// RemoveDisk releases a SCSI disk's mount.
func (m *Manager) RemoveDisk(ctx context.Context, d *protocol.MappedVirtualDisk) error {
	return m.disks.Remove(ctx, d)
}

// RemoveSCSIDevice lets go of a SCSI device the host is about to unplug.
func (m *Manager) RemoveSCSIDevice(ctx context.Context, d *protocol.SCSIDevice) error {
	return m.disks.RemoveDevice(ctx, d)
}

// AddShare mounts a directory the host shares (virtio-9p by tag, or 9p
// over a port).
func (m *Manager) AddShare(ctx context.Context, d *protocol.MappedDirectory) error {
	return m.shares.Add(ctx, d)
}

// RemoveShare releases a shared directory's mount.
func (m *Manager) RemoveShare(ctx context.Context, d *protocol.MappedDirectory) error {
	return m.shares.Remove(ctx, d)
}

// AddVPMem mounts a VPMem layer.
func (m *Manager) AddVPMem(ctx context.Context, d *protocol.VPMemDevice) error {
	return m.pmem.Add(ctx, d)
}

// RemoveVPMem releases a VPMem layer's mount.
func (m *Manager) RemoveVPMem(ctx context.Context, d *protocol.VPMemDevice) error {
	return m.pmem.Remove(ctx, d)
}

// AddLayers combines layers into a container's root filesystem.
func (m *Manager) AddLayers(ctx context.Context, c *protocol.CombinedLayers) error {
	return m.layers.Add(ctx, c)
}

// RemoveLayers releases a container's root filesystem.
func (m *Manager) RemoveLayers(ctx context.Context, c *protocol.CombinedLayers) error {
	return m.layers.Remove(ctx, c)
}
