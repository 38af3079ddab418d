package main

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"io"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// fakeCPUID answers CPUID like a CPU under the hypervisor whose vendor
// signature is vendor ("" for none).
func fakeCPUID(vendor string) cpuidFunc {
	return func(leaf, _ uint32) (eax, ebx, ecx, edx uint32) {
		switch leaf {
		case 1:
			if vendor != "" {
				ecx = 1 << 31
			}
		case 0x40000000:
			var sig [12]byte
			copy(sig[:], vendor)
			return 0x40000006, binary.LittleEndian.Uint32(sig[0:]), binary.LittleEndian.Uint32(sig[4:]), binary.LittleEndian.Uint32(sig[8:])
		}
		return eax, ebx, ecx, edx
	}
}

func TestHypervisorVendor(t *testing.T) {
	for _, v := range []string{hyperVVendor, "KVMKVMKVM", "TCGTCGTCGTCG", ""} {
		if got := hypervisorVendor(fakeCPUID(v)); got != v {
			t.Errorf("vendor %q read as %q", v, got)
		}
	}
	// Leaf 0x40000000 means nothing without the hypervisor-present bit.
	bare := func(leaf, sub uint32) (uint32, uint32, uint32, uint32) {
		a, b, c, d := fakeCPUID(hyperVVendor)(leaf, sub)
		if leaf == 1 {
			c = 0
		}
		return a, b, c, d
	}
	if got := hypervisorVendor(bare); got != "" {
		t.Errorf("bare metal read as %q", got)
	}
	t.Logf("this machine: %q", hypervisorVendor(cpuid))
}

func TestLoadBootModules(t *testing.T) {
	for _, tc := range []struct {
		name, vendor string
		noVMBus      bool
		want         []string // the lists loaded, in order
	}{
		{"QEMU", "TCGTCGTCGTCG", false, []string{"qemu"}},
		{"bare metal", "", false, []string{"qemu"}},
		{"Hyper-V", hyperVVendor, false, []string{"hyperv"}},
		{"KVM posing as Hyper-V", hyperVVendor, true, []string{"hyperv", "qemu"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var loaded []string
			loadBootModules(tc.vendor, "qemu", "hyperv", func(list string) moduleResults {
				loaded = append(loaded, list)
				if list == "hyperv" && tc.noVMBus {
					return moduleResults{skipped: []string{"hv_vmbus"}}
				}
				return moduleResults{loaded: 1}
			})
			if !slices.Equal(loaded, tc.want) {
				t.Errorf("loaded %v, want %v", loaded, tc.want)
			}
		})
	}
}

// initrdFile returns the contents of name (a path without the leading
// slash) in a gzip'd newc initrd.
func initrdFile(t *testing.T, initrd, name string) (string, bool) {
	t.Helper()
	f, err := os.Open(initrd)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	align := func(n int) int { return (n + 3) &^ 3 }
	for off := 0; off+110 <= len(b); {
		hdr := b[off : off+110]
		if !bytes.HasPrefix(hdr, []byte("070701")) {
			t.Fatalf("%s: no newc header at %d", initrd, off)
		}
		field := func(i int) int {
			n, err := strconv.ParseUint(string(hdr[6+8*i:14+8*i]), 16, 32)
			if err != nil {
				t.Fatalf("%s: bad header at %d: %v", initrd, off, err)
			}
			return int(n)
		}
		size, nameSize := field(6), field(11)
		entry := strings.TrimSuffix(string(b[off+110:off+110+nameSize]), "\x00")
		data := align(off + 110 + nameSize)
		if entry == "TRAILER!!!" {
			break
		}
		if entry == name {
			return string(b[data : data+size]), true
		}
		off = align(data + size)
	}
	return "", false
}

// moduleNames are the module names of a load list.
func moduleNames(list string) []string {
	var names []string
	for _, rel := range parseModuleList(list) {
		names = append(names, strings.TrimSuffix(path.Base(rel), ".ko"))
	}
	return names
}

// TestInitrdModuleLists checks make all's two load lists: QEMU's loads no
// Hyper-V module, Hyper-V's no virtio one, and each has its vsock
// transport.
func TestInitrdModuleLists(t *testing.T) {
	_, initrd := bootFiles(t)
	lists := map[string][]string{}
	for _, name := range []string{"etc/modules-load", "etc/modules-load.hyperv"} {
		s, ok := initrdFile(t, initrd, name)
		if !ok {
			t.Fatalf("%s has no /%s (make all)", initrd, name)
		}
		lists[name] = moduleNames(s)
		t.Logf("/%s: %d modules: %s", name, len(lists[name]), strings.Join(lists[name], " "))
	}
	qemu, hyperv := lists["etc/modules-load"], lists["etc/modules-load.hyperv"]
	for _, m := range qemu {
		if strings.HasPrefix(m, "hv_") || strings.Contains(m, "hyperv") {
			t.Errorf("QEMU's list loads %s", m)
		}
	}
	for _, m := range hyperv {
		if strings.Contains(m, "virtio") {
			t.Errorf("Hyper-V's list loads %s", m)
		}
	}
	for _, want := range []string{"vmw_vsock_virtio_transport", "virtio_scsi", "ext4", "overlay"} {
		if !slices.Contains(qemu, want) {
			t.Errorf("QEMU's list lacks %s", want)
		}
	}
	for _, want := range []string{"hv_vmbus", "hv_sock", "hv_storvsc", "hv_utils", "sd_mod", "ext4", "overlay"} {
		if !slices.Contains(hyperv, want) {
			t.Errorf("Hyper-V's list lacks %s", want)
		}
	}
	if i, j := slices.Index(hyperv, "vsock"), slices.Index(hyperv, "hv_sock"); i < 0 || j < i {
		t.Errorf("Hyper-V's list: vsock at %d, hv_sock at %d: want the core first", i, j)
	}
	if len(hyperv) > 0 && hyperv[0] != "crc32c_generic" {
		t.Errorf("Hyper-V's list starts with %s, want crc32c_generic", hyperv[0])
	}
}

// bootListLength is how many modules the QEMU list of initrd names.
func bootListLength(t *testing.T, initrd string) int {
	t.Helper()
	s, ok := initrdFile(t, initrd, "etc/modules-load")
	if !ok {
		t.Fatalf("%s has no /etc/modules-load", initrd)
	}
	return len(parseModuleList(s))
}
