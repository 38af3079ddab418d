package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"github.com/uvmgcs/gcs/host/uvm"
	"github.com/uvmgcs/gcs/host/uvm/named"
	"github.com/uvmgcs/gcs/host/vm/qemu"
)

// uvms is where long-lived VMs are named.
var uvms = named.Store{}

func validUVMName(name string) bool { return named.ValidName(name) }

// reachUVM attaches to the named VM: its agent and its owner.
func reachUVM(ctx context.Context, name string) (*reached, error) {
	u, err := uvms.Attach(ctx, name, uvm.Options{})
	if err != nil {
		return nil, err
	}
	return &reached{gc: u.GuestConnection(), u: u, close: func() { u.Detach() }}, nil
}

// uvmStart runs `uvm serve` detached and waits until its agent is ready.
func uvmStart(args []string) (int, error) {
	fs := flag.NewFlagSet("uvm start", flag.ContinueOnError)
	name := fs.String("name", "default", "the VM's name")
	vf := addVMFlags(fs)
	if err := fs.Parse(args); err != nil {
		return 2, usageError{err}
	}
	if !named.ValidName(*name) {
		return 2, usageError{fmt.Errorf("uvm name %q: letters, digits, '-', '_', '.'", *name)}
	}
	if err := vf.checkDriver(); err != nil {
		return 1, err
	}
	self, err := os.Executable()
	if err != nil {
		return 1, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), vmBootTimeout)
	defer cancel()
	if err := uvms.Start(ctx, *name, exec.Command(self, append([]string{"uvm", "serve"}, args...)...)); err != nil {
		return 1, err
	}
	fmt.Printf("uvm %s running; its agent is at --socket-dir %s (or --uvm %s)\n", *name, uvms.SocketDir(*name), *name)
	return 0, nil
}

// uvmServe is the relay that owns the VM until SIGTERM.
func uvmServe(args []string) (int, error) {
	fs := flag.NewFlagSet("uvm serve", flag.ContinueOnError)
	name := fs.String("name", "default", "the VM's name")
	vf := addVMFlags(fs)
	if err := fs.Parse(args); err != nil {
		return 2, usageError{err}
	}
	vf.console = true // into the log
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := uvms.Serve(ctx, *name, vf.config(), qemu.Options{Accel: vf.accel, Machine: vf.machineType}); err != nil {
		return 1, err
	}
	return 0, nil
}

func uvmStop(args []string) (int, error) {
	fs := flag.NewFlagSet("uvm stop", flag.ContinueOnError)
	name := fs.String("name", "default", "the VM's name")
	if err := fs.Parse(args); err != nil {
		return 2, usageError{err}
	}
	if !named.ValidName(*name) {
		return 2, usageError{fmt.Errorf("uvm name %q is not valid", *name)}
	}
	return 0, uvms.Stop(*name)
}

func uvmList() (int, error) {
	l, err := uvms.List()
	if err != nil {
		return 1, err
	}
	fmt.Printf("%-16s %-8s %s\n", "NAME", "PID", "SOCKET DIR")
	for _, v := range l {
		state := fmt.Sprint(v.Pid)
		if v.Pid == 0 {
			state = "stopped"
		}
		fmt.Printf("%-16s %-8s %s\n", v.Name, state, v.SocketDir)
	}
	return 0, nil
}
