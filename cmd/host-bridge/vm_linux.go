package main

import (
	"errors"

	"github.com/uvmgcs/gcs/host/vm"
	"github.com/uvmgcs/gcs/host/vm/qemu"
)

// defaultDriver is QEMU: the Host Compute Service runs on Windows only.
const defaultDriver = driverQEMU

// driverRuns says whether driver runs on Linux.
func driverRuns(driver string) error {
	if driver != driverQEMU {
		return errors.New("--driver hcs: the Host Compute Service runs on Windows; build host-bridge.exe with GOOS=windows (README, Windows hosts)")
	}
	return nil
}

// newMachine makes a VM with driver's New (driverRuns said it runs here).
func newMachine(_ string, cfg vm.Config, accel, machine string) (vm.VM, func(), error) {
	return qemu.New(cfg, qemu.Options{Accel: accel, Machine: machine}), func() {}, nil
}

// machineMicroVM is --machine's default: host-bridge's verbs hot-add SCSI
// disks only, which microvm serves, and it boots fastest.
const machineMicroVM = qemu.MachineMicroVM
