package hcs

import (
	"bytes"
	"encoding/json"
	"flag"
	"github.com/uvmgcs/gcs/protocol"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/uvmgcs/gcs/host/vm"
)

var update = flag.Bool("update", false, "rewrite the golden documents in testdata/")

// bootFiles are Windows paths: the document builder reads no files.
var bootFiles = vm.Config{Kernel: `C:\uvmgcs\vmlinux`, Initrd: `C:\uvmgcs\initrd.img`}

// golden checks both ways that v encodes to testdata/name and that the file
// decodes into a value equal to v; into is a pointer to a zero value of v's
// type to decode into. With -update it rewrites the file instead.
func golden(t *testing.T, name string, v, into any) {
	t.Helper()
	got, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s: encoding drifted from the golden file:\n got: %s\nwant: %s", name, got, want)
	}
	dec := json.NewDecoder(bytes.NewReader(want))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		t.Fatalf("%s: decode: %v", name, err)
	}
	if decoded := reflect.ValueOf(into).Elem().Interface(); !reflect.DeepEqual(decoded, reflect.ValueOf(v).Elem().Interface()) {
		t.Errorf("%s: decodes to\n%#v\nwant\n%#v", name, decoded, v)
	}
	// HCS gets the compact form of the same document.
	var compact bytes.Buffer
	if err := json.Compact(&compact, want); err != nil {
		t.Fatal(err)
	}
	if direct, _ := json.Marshal(v); !bytes.Equal(direct, compact.Bytes()) {
		t.Errorf("%s: compact encoding differs:\n%s\n%s", name, direct, compact.Bytes())
	}
}

func TestUVMDocumentDefault(t *testing.T) {
	golden(t, "uvm-default.json", uvmDocument(bootFiles, Options{}), &ComputeSystem{})
}

func TestUVMDocumentFourControllersTwoPMem(t *testing.T) {
	cfg := bootFiles
	cfg.MemoryMiB, cfg.CPUs = 2048, 4
	cfg.KernelArgs = "gcs.loglevel=debug"
	opts := Options{
		Owner:           "uvmgcs-test",
		SCSIControllers: 4,
		VPMemDevices:    2,
		ConsolePipe:     `\\.\pipe\uvmgcs-test-console`,
	}
	golden(t, "uvm-scsi4-vpmem2.json", uvmDocument(cfg, opts), &ComputeSystem{})
}

func TestModifyRequests(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  *ModifySettingRequest
		into *ModifySettingRequest
	}{
		{"modify-scsi-add.json", addSCSIRequest(vm.Disk{Controller: 0, LUN: 3}, `C:\layers\scratch.vhdx`, false),
			&ModifySettingRequest{Settings: &Attachment{}}},
		{"modify-scsi-add-readonly.json", addSCSIRequest(vm.Disk{Controller: 2, LUN: 63}, `C:\layers\base.vhd`, true),
			&ModifySettingRequest{Settings: &Attachment{}}},
		{"modify-scsi-remove.json", removeSCSIRequest(vm.Disk{Controller: 0, LUN: 3}), &ModifySettingRequest{}},
		{"modify-vpmem-add.json", addVPMemRequest(1, `C:\layers\layer.vhd`),
			&ModifySettingRequest{Settings: &VirtualPMemDevice{}}},
	} {
		t.Run(tc.name, func(t *testing.T) { golden(t, tc.name, tc.req, tc.into) })
	}
}

func TestKernelCmdLine(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  vm.Config
		opts Options
		want string
	}{
		{"no console", vm.Config{}, Options{},
			"panic=-1 quiet pci=off brd.rd_nr=0 pmtmr=0 8250_core.nr_uarts=0 gcs.transport=vsock"},
		{"console and extra args last", vm.Config{KernelArgs: "gcs.loglevel=debug"}, Options{ConsolePipe: `\\.\pipe\c`},
			"panic=-1 quiet pci=off brd.rd_nr=0 pmtmr=0 console=ttyS0,115200 gcs.transport=vsock gcs.loglevel=debug"},
	} {
		if got := kernelCmdLine(tc.cfg, tc.opts); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// The controller table: index N is keyed by the VMBus instance ID the guest
// looks controller N up by, and the resource paths use it.
func TestSCSIControllerKeys(t *testing.T) {
	doc := uvmDocument(bootFiles, Options{SCSIControllers: MaxSCSIControllers})
	for n := range uint8(MaxSCSIControllers) {
		key := scsiKey(n)
		if g, _ := protocol.HyperVSCSIControllerGUID(n); key != g {
			t.Errorf("scsiKey(%d) = %q", n, key)
		}
		if _, ok := doc.VirtualMachine.Devices.Scsi[key]; !ok {
			t.Errorf("document has no controller %q", key)
		}
		path := addSCSIRequest(vm.Disk{Controller: n, LUN: 7}, `C:\d.vhdx`, false).ResourcePath
		if want := "VirtualMachine/Devices/Scsi/" + key + "/Attachments/7"; path != want {
			t.Errorf("controller %d: resource path %q, want %q", n, path, want)
		}
	}
	if len(doc.VirtualMachine.Devices.Scsi) != MaxSCSIControllers {
		t.Errorf("%d controllers, want %d", len(doc.VirtualMachine.Devices.Scsi), MaxSCSIControllers)
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []Options{{SCSIControllers: 5}, {SCSIControllers: -1}, {VPMemDevices: MaxVPMemDevices + 1}} {
		if err := o.withDefaults().validate(); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
	if err := (Options{VPMemDevices: -1}).withDefaults().validate(); err != nil {
		t.Errorf("no VPMem: %v", err)
	}
	doc := uvmDocument(bootFiles, Options{VPMemDevices: -1})
	if doc.VirtualMachine.Devices.VirtualPMem != nil {
		t.Error("VPMemDevices < 0 still has a VPMem controller")
	}
	if strings.Contains(mustJSON(t, doc), "VirtualPMem") {
		t.Error("VirtualPMem encoded")
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
