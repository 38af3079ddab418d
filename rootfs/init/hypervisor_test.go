package main

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path"
	"path/filepath"
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
			sysBus := t.TempDir()
			loadBootModules(tc.vendor, "qemu", "hyperv", vmbusPresent(sysBus), func(list string) moduleResults {
				loaded = append(loaded, list)
				if list == "hyperv" && !tc.noVMBus {
					// hv_vmbus, module or built in, found its bus.
					if err := os.Mkdir(filepath.Join(sysBus, "vmbus"), 0o755); err != nil {
						t.Fatal(err)
					}
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
// slash) in make all's lz4 newc initrd (unpacked with the lz4 tool that
// made it).
func initrdFile(t *testing.T, initrd, name string) (string, bool) {
	t.Helper()
	b, err := exec.Command("lz4", "-d", "-q", "-c", initrd).Output()
	if err != nil {
		t.Fatalf("lz4 -d %s: %v", initrd, err)
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

// TestInitrdModuleLists checks make all's two load lists against the
// kernel's built-in modules: QEMU's loads no Hyper-V module, Hyper-V's no
// virtio one, every module the boot needs is in its list or built in, and
// the virtio vsock transport is never built in (it would register before
// hv_sock on Hyper-V and keep hvsocket from working).
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
	kver, ok := initrdFile(t, initrd, "info/kernel-version")
	if !ok {
		t.Fatalf("%s has no /info/kernel-version", initrd)
	}
	kver = strings.TrimSpace(kver)
	builtinList, ok := initrdFile(t, initrd, "lib/modules/"+kver+"/modules.builtin")
	if !ok {
		t.Fatalf("%s has no modules.builtin for %s", initrd, kver)
	}
	builtin := moduleNames(builtinList)
	t.Logf("kernel %s: %d modules built in", kver, len(builtin))
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
	has := func(list []string, m string) bool { return slices.Contains(list, m) || slices.Contains(builtin, m) }
	for _, want := range []string{"vmw_vsock_virtio_transport", "virtio_scsi", "ext4", "overlay"} {
		if !has(qemu, want) {
			t.Errorf("QEMU's list lacks %s, and the kernel has not built it in", want)
		}
	}
	for _, want := range []string{"hv_vmbus", "hv_sock", "hv_storvsc", "hv_utils", "sd_mod", "ext4", "overlay"} {
		if !has(hyperv, want) {
			t.Errorf("Hyper-V's list lacks %s, and the kernel has not built it in", want)
		}
	}
	if slices.Contains(builtin, "vmw_vsock_virtio_transport") {
		t.Errorf("the kernel has the virtio vsock transport built in: hv_sock cannot register on Hyper-V")
	}
	if i, j := slices.Index(hyperv, "vsock"), slices.Index(hyperv, "hv_sock"); j >= 0 && !slices.Contains(builtin, "vsock") && (i < 0 || j < i) {
		t.Errorf("Hyper-V's list: vsock at %d, hv_sock at %d: want the core first", i, j)
	}
	if slices.Contains(hyperv, "crc32c_generic") && hyperv[0] != "crc32c_generic" {
		t.Errorf("Hyper-V's list starts with %s, want crc32c_generic", hyperv[0])
	}
	if slices.Contains(builtin, "ext4") {
		checkUVMKernel(t, builtin, qemu, hyperv)
	}
}

// checkUVMKernel checks a kernel built from rootfs/kernel.config: every
// module of modules.txt built in but the virtio vsock transport, which is
// all QEMU's list loads; Hyper-V's list is empty.
func checkUVMKernel(t *testing.T, builtin, qemu, hyperv []string) {
	b, err := os.ReadFile("../modules.txt")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"9pnet_fd"} // 9p over a dialed port
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(strings.SplitN(line, "#", 2)[0]); len(f) > 0 {
			want = append(want, strings.ReplaceAll(f[0], "-", "_"))
		}
	}
	normalized := make([]string, len(builtin))
	for i, m := range builtin {
		normalized[i] = strings.ReplaceAll(m, "-", "_")
	}
	for _, m := range want {
		if m != "vmw_vsock_virtio_transport" && !slices.Contains(normalized, m) {
			t.Errorf("the UVM kernel has not built in %s", m)
		}
	}
	if !slices.Equal(qemu, []string{"vmw_vsock_virtio_transport"}) || len(hyperv) != 0 {
		t.Errorf("the UVM kernel's lists: QEMU %v, Hyper-V %v; want [vmw_vsock_virtio_transport] and []", qemu, hyperv)
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
