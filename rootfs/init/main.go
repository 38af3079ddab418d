// Command init is the utility VM's PID 1. It mounts the kernel file systems
// and cgroups, loads the kernel modules listed in /etc/modules-load (on
// Hyper-V, /etc/modules-load.hyperv instead: see loadBootModules), brings
// up lo, has the kernel report smaller free blocks to the host
// (reportSmallFreeBlocks), prints "uvmgcs-init: ready <ms since boot>" on
// the console, starts /bin/gcs with flags taken from the kernel command
// line, reaps orphans, and powers the VM off when gcs exits. A fatal error
// of its own is printed and powers the VM off too: the host sees QEMU exit,
// never a hung guest.
//
// Kernel command line:
//
//	gcs.<name>=<value>  passed to gcs as -<name>=<value> (gcs.loglevel=debug
//	                    gives -loglevel=debug); defaults -transport=auto
//	                    -state-root=/run/gcs
//	gcs.<name>          passed as -<name> (a boolean flag)
//	gcs.cgroup=v1       mount cgroup v1 hierarchies instead of cgroup2 at
//	                    /sys/fs/cgroup; read here, not passed to gcs
//
// It is Go, not C: it builds with the toolchain the agent already needs, it
// is static with CGO_ENABLED=0 (no libc to bring into the initrd), and at
// under 2 MB stripped it is small next to the agent and the modules.
package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const (
	agentPath   = "/bin/gcs"
	modulesList = "/etc/modules-load"
	// sysVirtioDevices lists the virtio bus's devices.
	sysVirtioDevices = "/sys/bus/virtio/devices"
	hyperVList       = "/etc/modules-load.hyperv"
	modulesRoot      = "/lib/modules"
	infoHash         = "/info/inputs.sha256"
	// pageReportingParam is where the page reporting order is set.
	pageReportingParam = "/sys/module/page_reporting/parameters/page_reporting_order"
)

func main() {
	if os.Getpid() != 1 {
		// Powering off is this program's way out: never on a host.
		fmt.Fprintln(os.Stderr, "uvmgcs-init: not PID 1; this is the utility VM's init")
		os.Exit(2)
	}
	defer func() {
		if r := recover(); r != nil {
			logf("fatal: panic: %v", r)
			powerOff()
		}
	}()
	if err := boot(); err != nil {
		logf("fatal: %v", err)
	}
	powerOff()
}

// boot brings the system up, runs the agent and returns when it has exited.
func boot() error {
	sigs := catchSignals()
	if err := mountKernelFS(); err != nil {
		return err
	}
	attachConsole()
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return err
	}
	cfg := parseBootConfig(string(cmdline))
	for _, w := range cfg.warnings {
		logf("%s", w)
	}
	logf("kernel %s, rootfs %s, started at %d ms", kernelRelease(), readTrimmed(infoHash), sinceBoot().Milliseconds())
	mountRest(cfg.cgroupV1)
	modDir := modulesRoot + "/" + kernelRelease()
	loadBootModules(hypervisorVendor(cpuid), modulesList, hyperVList, vmbusPresent("/sys/bus"), func(list string) moduleResults {
		return loadModules(list, modDir, virtioDeviceWanted(sysVirtioDevices))
	})
	if err := loopbackUp(); err != nil {
		logf("lo: %v", err)
	}
	seedEntropy()
	reportSmallFreeBlocks(pageReportingParam)
	exe := agentPath
	if sealed, err := sealBinary(agentPath); err != nil {
		logf("gcs runs from %s (it seals a copy of itself): %v", agentPath, err)
	} else {
		defer sealed.f.Close()
		exe = sealed.path()
		logf("gcs runs from a sealed memfd (%s removed: %v)", agentPath, sealed.removed)
	}
	logf("ready %d", sinceBoot().Milliseconds())
	return superviseAgent(exe, agentPath, cfg.agentArgs, sigs)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "uvmgcs-init: "+format+"\n", args...)
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

func readTrimmed(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

// sinceBoot is the time since the kernel started (CLOCK_BOOTTIME).
func sinceBoot() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
