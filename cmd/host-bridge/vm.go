package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/uvmgcs/gcs/host/uvm"
	"github.com/uvmgcs/gcs/host/vm"
)

// vmBootTimeout bounds a boot up to the agent's negotiation (TCG is slow).
const vmBootTimeout = 2 * time.Minute

// VM drivers (--driver): QEMU on Linux, the Host Compute Service on
// Windows. defaultDriver is this OS's (vm_linux.go, vm_windows.go).
const (
	driverQEMU = "qemu"
	driverHCS  = "hcs"
)

// vmFlags say how to boot a utility VM.
type vmFlags struct {
	driver         string
	kernel, initrd string
	memMiB, cpus   int
	accel          string
	machineType    string
	console        bool
	agentLog       string
	quiet          bool
}

// bootDir is where the boot files are looked for by default: next to this
// binary (make all puts both in out/).
func bootDir() string {
	exe, err := os.Executable()
	if err != nil {
		return "out"
	}
	return filepath.Dir(exe)
}

func addVMFlags(fs *flag.FlagSet) *vmFlags {
	v := &vmFlags{}
	dir := bootDir()
	fs.StringVar(&v.driver, "driver", defaultDriver, "the VM driver: qemu (Linux) or hcs (Windows)")
	fs.StringVar(&v.kernel, "kernel", filepath.Join(dir, "vmlinux"), "the VM's kernel")
	fs.StringVar(&v.initrd, "initrd", filepath.Join(dir, "initrd.img"), "the VM's initrd (make all)")
	fs.IntVar(&v.memMiB, "memory", 512, "VM memory in MiB")
	fs.IntVar(&v.cpus, "cpus", 1, "VM vCPUs")
	fs.StringVar(&v.accel, "accel", "", "qemu: tcg or kvm (default: probe)")
	// host-bridge's verbs hot-add SCSI disks only: microvm serves them and
	// boots fastest; pc has the memory slots and PCI hot-plug that pmem and
	// NICs need.
	fs.StringVar(&v.machineType, "machine", machineMicroVM, "qemu: microvm (boots fastest; no pmem or NIC hot-plug) or pc")
	fs.BoolVar(&v.console, "console", false, "copy the VM's console to stderr")
	fs.StringVar(&v.agentLog, "agent-log-level", "", "the agent's -loglevel in the VM")
	fs.BoolVar(&v.quiet, "q", false, "no progress on stderr")
	return v
}

// progress prints a boot stage and how long it took.
func (v *vmFlags) progress(format string, args ...any) {
	if !v.quiet {
		fmt.Fprintf(os.Stderr, "host-bridge: "+format+"\n", args...)
	}
}

// config is the VM the flags describe, for any driver.
func (v *vmFlags) config() vm.Config {
	var console io.Writer
	if v.console {
		console = os.Stderr
	}
	return vm.Config{
		Kernel: v.kernel, Initrd: v.initrd, KernelArgs: agentLogArg(v.agentLog),
		MemoryMiB: v.memMiB, CPUs: v.cpus, ConsoleLog: console,
	}
}

func agentLogArg(level string) string {
	if level == "" {
		return ""
	}
	return "gcs.loglevel=" + level
}

// checkDriver says whether --driver names a driver this OS runs.
func (v *vmFlags) checkDriver() error {
	if v.driver != driverQEMU && v.driver != driverHCS {
		return usageError{fmt.Errorf("--driver %q: want %s or %s", v.driver, driverQEMU, driverHCS)}
	}
	return driverRuns(v.driver)
}

// machine makes the VM the flags describe with the --driver's New, not
// started yet. release frees what the driver needed besides the VM (the
// HCS console's pipe); call it after Shutdown.
func (v *vmFlags) machine() (m vm.VM, release func(), err error) {
	if err := v.checkDriver(); err != nil {
		return nil, nil, err
	}
	return newMachine(v.driver, v.config(), v.accel, v.machineType)
}

// boot starts m and waits for its agent. The returned function shuts it
// down.
func (v *vmFlags) boot(ctx context.Context, m vm.VM) (*uvm.UVM, func(), error) {
	t0 := time.Now()
	v.progress("booting the utility VM (%s, %s, %s)", v.driver, filepath.Base(v.kernel), filepath.Base(v.initrd))
	u, err := uvm.Start(ctx, m, uvm.Options{})
	if err != nil {
		m.Shutdown(context.WithoutCancel(ctx))
		return nil, nil, err
	}
	v.progress("agent ready after %v (VM launched in %v)", time.Since(t0).Round(time.Millisecond), u.Booted.Round(time.Millisecond))
	stop := func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
		defer cancel()
		u.Shutdown(ctx)
	}
	return u, stop, nil
}
