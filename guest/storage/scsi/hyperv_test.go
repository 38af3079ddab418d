package scsi

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/Microsoft/go-winio/pkg/guid"

	"github.com/uvmgcs/gcs/guest/storage/storagetest"
)

// vmbusSCSIHost adds SCSI host number host to a fake sysfs the way a
// Hyper-V guest shows a storvsc controller: below the VMBus device named by
// its instance ID.
func vmbusSCSIHost(t *testing.T, sys string, host uint32, instance, procName string) {
	t.Helper()
	name := fmt.Sprintf("host%d", host)
	devDir := filepath.Join(sys, "devices", "LNXSYSTM:00", "LNXSYBUS:00", "ACPI0004:00", "VMBUS:00", instance, name)
	classDir := filepath.Join(devDir, "scsi_host", name)
	storagetest.WriteTree(t, classDir, map[string]string{"proc_name": procName + "\n"})
	link := filepath.Join(sys, "class", "scsi_host", name)
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(filepath.Dir(link), classDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(rel, link); err != nil {
		t.Fatal(err)
	}
}

func controllerGUID(t *testing.T, n uint8) string {
	t.Helper()
	id, ok := HyperVControllerGUID(n)
	if !ok {
		t.Fatalf("no GUID for controller %d", n)
	}
	return id
}

// TestHyperVControllerGUIDs: the table is what it says it is, version 5
// GUIDs of "0".."3" in hcsshim's namespace, and ends at 4 controllers,
// the most host/vm/hcs offers.
func TestHyperVControllerGUIDs(t *testing.T) {
	ns, err := guid.FromString("d422512d-2bf2-4752-809d-7b82b5fcb1b4")
	if err != nil {
		t.Fatal(err)
	}
	for n := range uint8(4) {
		want, err := guid.NewV5(ns, []byte(strconv.Itoa(int(n))))
		if err != nil {
			t.Fatal(err)
		}
		if got := controllerGUID(t, n); got != want.String() {
			t.Errorf("controller %d: %s, want %s", n, got, want)
		}
	}
	if id, ok := HyperVControllerGUID(4); ok {
		t.Errorf("controller 4: %s, want none", id)
	}
}

// TestControllerHostsHyperV: storvsc hosts are found by their VMBus
// instance, whatever host number VMBus's offer order gave them; other
// drivers' hosts are not controllers.
func TestControllerHostsHyperV(t *testing.T) {
	sys := filepath.Join(t.TempDir(), "sys")
	vmbusSCSIHost(t, sys, 0, controllerGUID(t, 2), storvsc)
	vmbusSCSIHost(t, sys, 1, controllerGUID(t, 0), storvsc)
	vmbusSCSIHost(t, sys, 2, controllerGUID(t, 1), storvsc)
	vmbusSCSIHost(t, sys, 3, controllerGUID(t, 3), storvsc)
	storagetest.SCSIHost(t, sys, 4, "0000:00:01.1", "ata_piix")
	// A storvsc host on no VMBus device is nobody's controller.
	storagetest.SCSIHost(t, sys, 5, "0000:00:02.0", storvsc)
	hosts, err := ControllerHosts(sys)
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint32{1, 2, 0, 3}; !slices.Equal(hosts, want) {
		t.Fatalf("controller hosts %v, want %v", hosts, want)
	}
}

// TestControllerHostsHyperVGap: a controller that is not there (yet)
// ends ControllerHosts' list, and the Locator still finds the ones after
// it.
func TestControllerHostsHyperVGap(t *testing.T) {
	sys := filepath.Join(t.TempDir(), "sys")
	vmbusSCSIHost(t, sys, 0, controllerGUID(t, 2), storvsc)
	vmbusSCSIHost(t, sys, 3, controllerGUID(t, 0), storvsc)
	// A storvsc host with an ID outside the table is ignored while the
	// table matches others.
	vmbusSCSIHost(t, sys, 7, "9ea3b5f1-7b7c-4f41-8c3d-6d1b9f1e0a01", storvsc)
	hosts, err := ControllerHosts(sys)
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint32{3}; !slices.Equal(hosts, want) {
		t.Fatalf("controller hosts %v, want %v", hosts, want)
	}
	l := NewLocator(Config{SysRoot: sys, DevRoot: t.TempDir()})
	if h, err := l.host(2); err != nil || h != 0 {
		t.Errorf("controller 2: host %d, %v; want host 0", h, err)
	}
	for _, c := range []uint8{1, 3, 4} {
		if _, err := l.host(c); !errors.Is(err, errNotPresent) {
			t.Errorf("controller %d: %v, want not present", c, err)
		}
	}
}

// TestControllerHostsHyperVFallback: with no instance ID from the table,
// the storvsc hosts are the controllers in the string order of their IDs.
func TestControllerHostsHyperVFallback(t *testing.T) {
	sys := filepath.Join(t.TempDir(), "sys")
	vmbusSCSIHost(t, sys, 0, "f8b3781b-1e82-4818-a1c3-63d806ec15bb", storvsc)
	vmbusSCSIHost(t, sys, 1, "0a1b2c3d-0000-4000-8000-000000000001", storvsc)
	vmbusSCSIHost(t, sys, 2, "6e1e8a52-3c1b-4a5d-9d7a-2f0c6b8e4d11", storvsc)
	hosts, err := ControllerHosts(sys)
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint32{1, 2, 0}; !slices.Equal(hosts, want) {
		t.Fatalf("controller hosts %v, want %v", hosts, want)
	}
}

// TestControllerHostsHyperVIgnoresVirtio: a VM with storvsc hosts is a
// Hyper-V VM; a virtio-scsi host does not shift its controllers.
func TestControllerHostsHyperVIgnoresVirtio(t *testing.T) {
	sys := filepath.Join(t.TempDir(), "sys")
	storagetest.SCSIHost(t, sys, 0, "0000:00:04.0", virtioSCSI)
	vmbusSCSIHost(t, sys, 1, controllerGUID(t, 0), storvsc)
	hosts, err := ControllerHosts(sys)
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint32{1}; !slices.Equal(hosts, want) {
		t.Fatalf("controller hosts %v, want %v", hosts, want)
	}
}

// TestLookupHyperV finds a disk on a storvsc controller by (controller,
// LUN) through the VMBus mapping.
func TestLookupHyperV(t *testing.T) {
	storagetest.RequireRoot(t) // device nodes
	dir := t.TempDir()
	sys, dev := filepath.Join(dir, "sys"), filepath.Join(dir, "dev")
	vmbusSCSIHost(t, sys, 0, controllerGUID(t, 1), storvsc)
	vmbusSCSIHost(t, sys, 1, controllerGUID(t, 0), storvsc)
	storagetest.SCSIDisk(t, sys, 1, 2, "sda", 1)
	storagetest.SCSIDisk(t, sys, 0, 2, "sdb", 0)
	for _, n := range []string{"sda", "sda1", "sdb"} {
		storagetest.BlockNode(t, dev, n)
	}
	l := NewLocator(Config{SysRoot: sys, DevRoot: dev})
	for _, tc := range []struct {
		c, lun uint8
		part   uint64
		want   string
	}{{0, 2, 0, "sda"}, {0, 2, 1, "sda1"}, {1, 2, 0, "sdb"}} {
		got, err := l.Lookup(tc.c, tc.lun, tc.part)
		if err != nil || got != filepath.Join(dev, tc.want) {
			t.Errorf("controller %d lun %d partition %d: %q, %v; want %s", tc.c, tc.lun, tc.part, got, err, tc.want)
		}
	}
	if _, err := l.Lookup(2, 0, 0); !errors.Is(err, errNotPresent) {
		t.Errorf("controller 2: %v, want not present", err)
	}
}

// TestHCSDocumentControllerKeys holds the host side to the table: each
// Devices.Scsi key of host/vm/hcs's four-controller golden document is
// controller n's GUID from the table, or the decimal index, whose instance
// ID HCS derives itself (ControllerHosts then falls back to ID order,
// which is exact for one controller). Any other key breaks the mapping.
func TestHCSDocumentControllerKeys(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "host", "vm", "hcs", "testdata", "uvm-scsi4-vpmem2.json"))
	if err != nil {
		t.Skipf("SKIP (loud): no host/vm/hcs golden document: %v", err)
	}
	var doc struct {
		VirtualMachine struct {
			Devices struct {
				Scsi map[string]json.RawMessage
			}
		}
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	keys := doc.VirtualMachine.Devices.Scsi
	if len(keys) != 4 {
		t.Fatalf("the document has %d SCSI controllers, want 4", len(keys))
	}
	byGUID := 0
	for n := range uint8(4) {
		id := controllerGUID(t, n)
		_, asGUID := keys[id]
		_, asIndex := keys[strconv.Itoa(int(n))]
		switch {
		case asGUID:
			byGUID++
		case !asIndex:
			t.Errorf("controller %d: the document names it neither %s nor %d: %v", n, id, n, keys)
		}
	}
	if byGUID == 0 {
		t.Logf("host/vm/hcs keys controllers by index: unless HCS derives the table's IDs from those keys, the guest orders them by VMBus instance ID (exact with one controller)")
	}
}
