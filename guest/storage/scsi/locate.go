package scsi

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/uvmgcs/gcs/protocol"
)

// DefaultTimeout bounds the wait for a disk the host says it attached.
const DefaultTimeout = 5 * time.Second

// Config says where a Locator looks.
type Config struct {
	// SysRoot is sysfs ("/sys" in the guest).
	SysRoot string
	// DevRoot holds device nodes ("/dev" in the guest).
	DevRoot string
	// Hosts, when not nil, maps controller indices to SCSI host numbers
	// and replaces the discovery ControllerHosts does.
	Hosts map[uint8]uint32
	// Timeout bounds Find's wait (DefaultTimeout if 0).
	Timeout time.Duration
}

// Locator finds SCSI block devices. It holds no state besides its
// configuration; the sysfs tree is read afresh on every call.
type Locator struct {
	cfg Config
	// watch opens the source of "something changed" wake-ups Find waits
	// on; tests replace it.
	watch func() (watcher, error)
}

// NewLocator returns a Locator for cfg.
func NewLocator(cfg Config) *Locator {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	return &Locator{cfg: cfg, watch: openUevents}
}

// errNotPresent means the device is not (yet) in sysfs or /dev.
var errNotPresent = errors.New("not present")

// virtioSCSI is the proc_name of a virtio-scsi SCSI host.
const virtioSCSI = "virtio_scsi"

// ControllerHosts returns the SCSI host number of each controller, indexed
// by controller number.
//
// Under QEMU every SCSI controller the host attaches is a virtio-scsi PCI
// function, and the host adds controller C as the C-th of them in PCI
// address order; the guest kernel makes each one SCSI host. So the SCSI
// hosts whose driver (proc_name) is virtio_scsi, ordered by their device
// path (which starts with the PCI address), are the controllers in index
// order: controller 0 is the first of them, which is also the lowest host
// number since the kernel probes PCI in address order. Hosts of other
// drivers (an emulated IDE or AHCI disk, USB storage) are not controllers
// the host addresses. Config.Hosts overrides this table for a VMM that
// numbers its controllers differently.
func ControllerHosts(sysRoot string) ([]uint32, error) {
	dir := filepath.Join(sysRoot, "class", "scsi_host")
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("list SCSI hosts: %w", err)
	}
	type host struct {
		n    uint32
		path string
	}
	var hosts []host
	for _, e := range ents {
		num, ok := strings.CutPrefix(e.Name(), "host")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(num, 10, 32)
		if err != nil {
			continue
		}
		link := filepath.Join(dir, e.Name())
		name, err := os.ReadFile(filepath.Join(link, "proc_name"))
		if err != nil || strings.TrimSpace(string(name)) != virtioSCSI {
			continue
		}
		path, err := filepath.EvalSymlinks(link)
		if err != nil {
			return nil, fmt.Errorf("SCSI host %s: %w", e.Name(), err)
		}
		hosts = append(hosts, host{uint32(n), path})
	}
	sort.Slice(hosts, func(i, j int) bool {
		if hosts[i].path != hosts[j].path {
			return hosts[i].path < hosts[j].path
		}
		return hosts[i].n < hosts[j].n
	})
	out := make([]uint32, len(hosts))
	for i, h := range hosts {
		out[i] = h.n
	}
	return out, nil
}

// host returns controller's SCSI host number, or errNotPresent.
func (l *Locator) host(controller uint8) (uint32, error) {
	if l.cfg.Hosts != nil {
		h, ok := l.cfg.Hosts[controller]
		if !ok {
			return 0, fmt.Errorf("controller %d is not in the configured table: %w", controller, protocol.HrInvalidArg)
		}
		return h, nil
	}
	hosts, err := ControllerHosts(l.cfg.SysRoot)
	if err != nil {
		return 0, err
	}
	if int(controller) >= len(hosts) {
		return 0, fmt.Errorf("%w: %d virtio-scsi controllers, no controller %d", errNotPresent, len(hosts), controller)
	}
	return hosts[controller], nil
}

// deviceDir is the sysfs directory of the SCSI device at host:0:0:lun.
func (l *Locator) deviceDir(host uint32, lun uint8) string {
	return filepath.Join(l.cfg.SysRoot, "bus", "scsi", "devices", fmt.Sprintf("%d:0:0:%d", host, lun))
}

// PartitionName is the kernel's name for partition n of disk: sda 1 →
// sda1, but a disk whose name ends in a digit takes a "p" (loop0 1 →
// loop0p1). Partition 0 is the whole disk.
func PartitionName(disk string, n uint64) string {
	if n == 0 {
		return disk
	}
	if last := disk[len(disk)-1]; last >= '0' && last <= '9' {
		return disk + "p" + strconv.FormatUint(n, 10)
	}
	return disk + strconv.FormatUint(n, 10)
}

// Lookup returns the device node of (controller, lun, partition) as sysfs
// and the device root show it now, without waiting. A device that is not
// there yet is an error wrapping errNotPresent.
func (l *Locator) Lookup(controller, lun uint8, partition uint64) (string, error) {
	host, err := l.host(controller)
	if err != nil {
		return "", err
	}
	blockDir := filepath.Join(l.deviceDir(host, lun), "block")
	ents, err := os.ReadDir(blockDir)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && len(ents) == 0) {
		return "", fmt.Errorf("%w: no block device at SCSI address %d:0:0:%d", errNotPresent, host, lun)
	}
	if err != nil {
		return "", fmt.Errorf("read %s: %w", blockDir, err)
	}
	if len(ents) != 1 {
		return "", fmt.Errorf("%s holds %d block devices, want 1: %w", blockDir, len(ents), protocol.HrFail)
	}
	disk := ents[0].Name()
	name := PartitionName(disk, partition)
	if partition != 0 {
		if _, err := os.Stat(filepath.Join(blockDir, disk, name)); err != nil {
			return "", fmt.Errorf("%w: disk %s has no partition %d yet", errNotPresent, disk, partition)
		}
	}
	dev := filepath.Join(l.cfg.DevRoot, name)
	fi, err := os.Stat(dev)
	if err != nil {
		return "", fmt.Errorf("%w: %s has no device node yet", errNotPresent, name)
	}
	if fi.Mode()&fs.ModeDevice == 0 || fi.Mode()&fs.ModeCharDevice != 0 {
		return "", fmt.Errorf("%s is not a block device: %w", dev, protocol.HrFail)
	}
	return dev, nil
}

// Delete tells the guest kernel to let go of the SCSI device at
// (controller, lun) before the host unplugs it. A device that is already
// gone is success.
func (l *Locator) Delete(controller, lun uint8) error {
	host, err := l.host(controller)
	if errors.Is(err, errNotPresent) {
		return nil
	}
	if err != nil {
		return err
	}
	path := filepath.Join(l.deviceDir(host, lun), "delete")
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete SCSI device %d:0:0:%d: %w", host, lun, err)
	}
	_, err = f.WriteString("1")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("delete SCSI device %d:0:0:%d: %w", host, lun, err)
	}
	return nil
}
