package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/uvmgcs/gcs/host"
	"github.com/uvmgcs/gcs/host/uvm"
	"github.com/uvmgcs/gcs/host/vm"
	"github.com/uvmgcs/gcs/host/vm/qemu"
)

// vmBootTimeout bounds a boot up to the agent's negotiation (TCG is slow).
const vmBootTimeout = 2 * time.Minute

// vmFlags say how to boot a utility VM.
type vmFlags struct {
	kernel, initrd string
	memMiB, cpus   int
	accel          string
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
	fs.StringVar(&v.kernel, "kernel", filepath.Join(dir, "vmlinux"), "the VM's kernel")
	fs.StringVar(&v.initrd, "initrd", filepath.Join(dir, "initrd.img"), "the VM's initrd (make all)")
	fs.IntVar(&v.memMiB, "memory", 512, "VM memory in MiB")
	fs.IntVar(&v.cpus, "cpus", 1, "VM vCPUs")
	fs.StringVar(&v.accel, "accel", "", "tcg or kvm (default: probe)")
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

// boot starts a VM and waits for its agent. The returned function shuts
// it down.
func (v *vmFlags) boot(ctx context.Context) (*uvm.UVM, *qemu.VM, func(), error) {
	var console io.Writer
	if v.console {
		console = os.Stderr
	}
	args := ""
	if v.agentLog != "" {
		args = "gcs.loglevel=" + v.agentLog
	}
	m := qemu.New(vm.Config{
		Kernel: v.kernel, Initrd: v.initrd, KernelArgs: args,
		MemoryMiB: v.memMiB, CPUs: v.cpus, Accel: v.accel, ConsoleLog: console,
	})
	t0 := time.Now()
	v.progress("booting the utility VM (%s, %s)", filepath.Base(v.kernel), filepath.Base(v.initrd))
	u, err := uvm.Start(ctx, m, host.Config{})
	if err != nil {
		m.Shutdown(context.WithoutCancel(ctx))
		return nil, nil, nil, err
	}
	v.progress("agent ready after %v (VM launched in %v)", time.Since(t0).Round(time.Millisecond), u.Booted.Round(time.Millisecond))
	stop := func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
		defer cancel()
		u.Close(ctx)
	}
	return u, m, stop, nil
}
