package scsi

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/uvmgcs/gcs/guest/storage/uevent"

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
	watch func() (uevent.Watcher, error)
}

// NewLocator returns a Locator for cfg.
func NewLocator(cfg Config) *Locator {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	return &Locator{cfg: cfg, watch: uevent.Open}
}

// errNotPresent means the device is not (yet) in sysfs or /dev.
var errNotPresent = uevent.ErrNotPresent

// SCSI host drivers (proc_name) whose hosts are controllers the host
// addresses by index.
const (
	virtioSCSI = "virtio_scsi"  // QEMU: a virtio-scsi PCI function
	storvsc    = "storvsc_host" // Hyper-V: a synthetic SCSI controller on VMBus (hv_storvsc)
)

// HyperVControllerGUID is the VMBus instance ID of Hyper-V SCSI controller
// index n (0 to 3), as the guest finds it in sysfs: the name of the VMBus
// device directory above the controller's SCSI host
// (.../VMBUS:00/<guid>/host<M>, also /sys/bus/vmbus/devices/<guid>).
//
// These are hcsshim's controller IDs (guestrequest.ScsiControllerGuids):
// name-based (version 5) GUIDs of the index's decimal string, "0" to "3",
// in the namespace d422512d-2bf2-4752-809d-7b82b5fcb1b4. hcsshim keys its
// compute system document's Devices.Scsi by them, and HCS uses a key that
// is a GUID as the controller's instance ID, so controller n is then
// found by this ID whatever SCSI host number the guest kernel gave it.
//
// The table lives in protocol (HyperVSCSIControllerGUID), which
// host/vm/hcs keys its controllers by too. When no storvsc host carries an
// ID of the table (a host keying controllers otherwise), ControllerHosts
// falls back to ordering the storvsc hosts by their instance ID, which is
// exact for a VM with one controller.
func HyperVControllerGUID(n uint8) (string, bool) { return protocol.HyperVSCSIControllerGUID(n) }

// ControllerHosts returns the SCSI host number of each controller, indexed
// by controller number, up to the first controller that has no SCSI host
// (yet).
//
// Under QEMU every SCSI controller the host attaches is a virtio-scsi PCI
// function, and the host adds controller C as the C-th of them in PCI
// address order; the guest kernel makes each one SCSI host. So the SCSI
// hosts whose driver (proc_name) is virtio_scsi, ordered by their device
// path (which starts with the PCI address), are the controllers in index
// order: controller 0 is the first of them, which is also the lowest host
// number since the kernel probes PCI in address order.
//
// Under Hyper-V each controller is a VMBus device driven by hv_storvsc
// (proc_name storvsc_host), and VMBus offers its devices in no fixed
// order, so the host number says nothing: controller C is the storvsc
// host below the VMBus device named HyperVControllerGUID(C), or, when no
// storvsc host has an ID of that table, the C-th storvsc host in the
// string order of their VMBus instance IDs. A VM with storvsc hosts is
// taken to be a Hyper-V VM: its virtio-scsi hosts, if any, are ignored.
//
// Hosts of other drivers (an emulated IDE or AHCI disk, USB storage) are
// not controllers the host addresses. Config.Hosts overrides this table
// for a VMM that numbers its controllers differently.
func ControllerHosts(sysRoot string) ([]uint32, error) {
	byIndex, err := controllerHosts(sysRoot)
	if err != nil {
		return nil, err
	}
	var out []uint32
	for c := 0; c < len(byIndex); c++ {
		h, ok := byIndex[uint8(c)]
		if !ok {
			break
		}
		out = append(out, h)
	}
	return out, nil
}

// scsiHost is one entry of /sys/class/scsi_host.
type scsiHost struct {
	n      uint32
	driver string // proc_name
	path   string // the class device's real sysfs path
}

// listSCSIHosts reads /sys/class/scsi_host: every host whose driver is
// one of drivers.
func listSCSIHosts(sysRoot string, drivers ...string) ([]scsiHost, error) {
	dir := filepath.Join(sysRoot, "class", "scsi_host")
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("list SCSI hosts: %w", err)
	}
	var hosts []scsiHost
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
		driver := strings.TrimSpace(string(name))
		if err != nil || !slices.Contains(drivers, driver) {
			continue
		}
		path, err := filepath.EvalSymlinks(link)
		if err != nil {
			return nil, fmt.Errorf("SCSI host %s: %w", e.Name(), err)
		}
		hosts = append(hosts, scsiHost{n: uint32(n), driver: driver, path: path})
	}
	return hosts, nil
}

// controllerHosts maps each controller index present to its SCSI host
// number, as ControllerHosts describes.
func controllerHosts(sysRoot string) (map[uint8]uint32, error) {
	hosts, err := listSCSIHosts(sysRoot, virtioSCSI, storvsc)
	if err != nil {
		return nil, err
	}
	var virtio []scsiHost
	vmbus := map[string]uint32{} // VMBus instance ID → host number
	for _, h := range hosts {
		switch h.driver {
		case virtioSCSI:
			virtio = append(virtio, h)
		case storvsc:
			if id, ok := vmbusInstance(h.path); ok {
				vmbus[id] = h.n
			}
		}
	}
	if len(vmbus) > 0 {
		return hyperVControllers(vmbus), nil
	}
	sort.Slice(virtio, func(i, j int) bool {
		if virtio[i].path != virtio[j].path {
			return virtio[i].path < virtio[j].path
		}
		return virtio[i].n < virtio[j].n
	})
	out := make(map[uint8]uint32, len(virtio))
	for i, h := range virtio {
		if i > 255 {
			break
		}
		out[uint8(i)] = h.n
	}
	return out, nil
}

// hyperVControllers maps controller indices to the storvsc hosts of
// vmbus (instance ID → host number): by HyperVControllerGUID, or, when
// none of its IDs is there, by the string order of the instance IDs.
func hyperVControllers(vmbus map[string]uint32) map[uint8]uint32 {
	out := make(map[uint8]uint32, len(vmbus))
	for c := 0; ; c++ {
		id, ok := HyperVControllerGUID(uint8(c))
		if !ok {
			break
		}
		if h, ok := vmbus[id]; ok {
			out[uint8(c)] = h
		}
	}
	if len(out) > 0 {
		return out
	}
	ids := make([]string, 0, len(vmbus))
	for id := range vmbus {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for i, id := range ids {
		if i > 255 {
			break
		}
		out[uint8(i)] = vmbus[id]
	}
	return out
}

// vmbusInstance returns the VMBus instance ID of the device a storvsc SCSI
// host belongs to, from the host's class device path
// .../<instance>/host<M>/scsi_host/host<M>, lower case.
func vmbusInstance(classPath string) (string, bool) {
	hostDir := filepath.Dir(filepath.Dir(classPath))
	id := strings.ToLower(filepath.Base(filepath.Dir(hostDir)))
	if !isGUID(id) {
		return "", false
	}
	return id, true
}

// isGUID reports whether s is a GUID in its 36-character text form.
func isGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, r := range s {
		switch i {
		case 8, 13, 18, 23:
			if r != '-' {
				return false
			}
		default:
			if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
				return false
			}
		}
	}
	return true
}

// host returns controller's SCSI host number, or errNotPresent.
func (l *Locator) host(controller uint8) (uint32, error) {
	if l.cfg.Hosts != nil {
		h, ok := l.cfg.Hosts[controller]
		if !ok {
			return 0, fmt.Errorf("controller %d is not in the configured table: %w", controller, errdefs.ErrInvalidArgument)
		}
		return h, nil
	}
	hosts, err := controllerHosts(l.cfg.SysRoot)
	if err != nil {
		return 0, err
	}
	h, ok := hosts[controller]
	if !ok {
		return 0, fmt.Errorf("%w: %d SCSI controllers (virtio-scsi or storvsc), no controller %d", errNotPresent, len(hosts), controller)
	}
	return h, nil
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
		return "", fmt.Errorf("%s holds %d block devices, want 1", blockDir, len(ents))
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
		return "", fmt.Errorf("%s is not a block device", dev)
	}
	return dev, nil
}

// Scan asks the kernel to probe the SCSI address (controller, lun) now
// (channel 0, target 0, as both QEMU and Hyper-V attach disks), through the
// host's sysfs scan file; it returns when the probe is done. A LUN already
// known is left as it is; one with no disk behind it adds nothing.
func (l *Locator) Scan(controller, lun uint8) error {
	host, err := l.host(controller)
	if err != nil {
		return err
	}
	path := filepath.Join(l.cfg.SysRoot, "class", "scsi_host", fmt.Sprintf("host%d", host), "scan")
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("scan SCSI address %d:0:0:%d: %w", host, lun, err)
	}
	_, err = fmt.Fprintf(f, "0 0 %d", lun)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("scan SCSI address %d:0:0:%d: %w", host, lun, err)
	}
	return nil
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
