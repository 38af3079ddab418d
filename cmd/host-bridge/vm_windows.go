package main

import (
	"errors"
	"fmt"

	"github.com/uvmgcs/gcs/host/vm"
	"github.com/uvmgcs/gcs/host/vm/hcs"
)

// defaultDriver is the Host Compute Service: QEMU is driven on Linux only.
const defaultDriver = driverHCS

// driverRuns says whether driver runs on Windows.
func driverRuns(driver string) error {
	if driver != driverHCS {
		return errors.New("--driver qemu: host/vm/qemu runs on Linux; on Windows use --driver hcs")
	}
	return nil
}

// machineMicroVM is --machine's default, which HCS has no use for.
const machineMicroVM = "microvm"

// newMachine makes a VM with driver's New (driverRuns said it runs here).
// With cfg.ConsoleLog the VM's ttyS0 goes to a named pipe this process
// serves and copies to it.
func newMachine(_ string, cfg vm.Config, accel, _ string) (vm.VM, func(), error) {
	if accel != "" {
		return nil, nil, fmt.Errorf("--accel %s: HCS always runs the VM on Hyper-V", accel)
	}
	return hcs.New(cfg, hcs.Options{}), func() {}, nil
}
