package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/Microsoft/go-winio"

	"github.com/uvmgcs/gcs/host/vm"
	"github.com/uvmgcs/gcs/host/vm/hcs"
)

// defaultDriver is the Host Compute Service: QEMU is driven on Linux only.
const defaultDriver = driverHCS

// consolePipeSDDL lets SYSTEM, Administrators and the Hyper-V VM worker
// processes (NT VIRTUAL MACHINE\Virtual Machines) open the console pipe:
// the worker connects the VM's serial port to it and writes.
const consolePipeSDDL = "D:P(A;;GA;;;SY)(A;;GA;;;BA)(A;;GA;;;S-1-5-83-0)"

// driverRuns says whether driver runs on Windows.
func driverRuns(driver string) error {
	if driver != driverHCS {
		return errors.New("--driver qemu: host/vm/qemu runs on Linux; on Windows use --driver hcs")
	}
	return nil
}

// newMachine makes a VM with driver's New (driverRuns said it runs here).
// With cfg.ConsoleLog the VM's ttyS0 goes to a named pipe this process
// serves and copies to it.
func newMachine(_ string, cfg vm.Config, accel string) (vm.VM, func(), error) {
	if accel != "" {
		return nil, nil, fmt.Errorf("--accel %s: HCS always runs the VM on Hyper-V", accel)
	}
	var opts hcs.Options
	release := func() {}
	if cfg.ConsoleLog != nil {
		name, stop, err := serveConsole(cfg.ConsoleLog)
		if err != nil {
			return nil, nil, err
		}
		opts.ConsolePipe, release = name, stop
	}
	return hcs.New(cfg, opts), release, nil
}

// serveConsole listens on a new named pipe for the VM's serial port and
// copies what the VM writes there to w until stop.
func serveConsole(w io.Writer) (name string, stop func(), err error) {
	name = `\\.\pipe\uvmgcs-console-` + randomHex(8)
	l, err := winio.ListenPipe(name, &winio.PipeConfig{SecurityDescriptor: consolePipeSDDL})
	if err != nil {
		return "", nil, fmt.Errorf("console pipe %s: %w", name, err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			io.Copy(w, c)
			c.Close()
		}
	}()
	return name, func() { l.Close() }, nil
}
