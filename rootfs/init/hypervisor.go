package main

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
)

// hyperVVendor is the hypervisor vendor signature Hyper-V reports.
const hyperVVendor = "Microsoft Hv"

// cpuidFunc executes CPUID for a leaf and subleaf: EAX, EBX, ECX, EDX.
type cpuidFunc func(leaf, subleaf uint32) (eax, ebx, ecx, edx uint32)

// hypervisorVendor is the vendor signature of the hypervisor the CPU runs
// under ("Microsoft Hv" on Hyper-V, "KVMKVMKVM" under KVM, "TCGTCGTCGTCG"
// under QEMU's emulator), or "" when CPUID reports none: the
// hypervisor-present bit (leaf 1, ECX bit 31), then leaf 0x40000000's EBX,
// ECX and EDX. It needs no kernel module and no firmware table, which a
// VM booted by HCS's LinuxKernelDirect may lack (no SMBIOS, so no
// /sys/class/dmi/id/sys_vendor).
func hypervisorVendor(cpuid cpuidFunc) string {
	if _, _, ecx, _ := cpuid(1, 0); ecx&(1<<31) == 0 {
		return ""
	}
	_, ebx, ecx, edx := cpuid(0x40000000, 0)
	var sig [12]byte
	binary.LittleEndian.PutUint32(sig[0:], ebx)
	binary.LittleEndian.PutUint32(sig[4:], ecx)
	binary.LittleEndian.PutUint32(sig[8:], edx)
	return strings.TrimRight(string(sig[:]), "\x00")
}

// loadBootModules has load (loadModules) load the boot's module list:
// on Hyper-V (hypervisor vendor "Microsoft Hv") hyperVList, the VMBus
// drivers, else list, QEMU's virtio drivers. The two exclude each other:
// each has its own vsock transport, and the kernel registers only the
// first one loaded. A VM whose CPU claims Hyper-V but that has no VMBus
// (KVM with Hyper-V enlightenments) gets list after all: vmbus says, after
// hyperVList is loaded, whether a VMBus came up (hv_vmbus registers its
// bus only when it finds one, loaded as a module or built in).
//
// On the UVM kernel everything but the virtio vsock transport is built in:
// hyperVList is empty and list names that one module.
func loadBootModules(vendor, list, hyperVList string, vmbus func() bool, load func(list string) moduleResults) moduleResults {
	if vendor != hyperVVendor {
		return load(list)
	}
	logf("modules: hypervisor %q: loading %s", vendor, hyperVList)
	res := load(hyperVList)
	if !vmbus() {
		logf("modules: no VMBus under %q; loading %s", vendor, list)
		return load(list)
	}
	return res
}

// vmbusPresent reports whether the VMBus driver registered its bus.
func vmbusPresent(sysBus string) func() bool {
	return func() bool {
		_, err := os.Stat(filepath.Join(sysBus, "vmbus"))
		return err == nil
	}
}
