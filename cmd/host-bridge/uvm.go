package main

import (
	"errors"
	"fmt"
)

// A long-lived utility VM: `uvm start` boots one in the background (`uvm
// serve`, which owns the VM) and every other verb reaches it with --uvm
// NAME. On Linux that is host/uvm/named: the server relays the agent's
// ports to a socket directory and verbs attach to the VM by name
// (uvm_linux.go); on Windows the verbs listen on the VM's hvsockets
// themselves (uvm_windows.go).

func uvmMain(args []string) (int, error) {
	if len(args) == 0 {
		return 2, usageError{errors.New("uvm: start, stop, list or serve")}
	}
	switch args[0] {
	case "start":
		return uvmStart(args[1:])
	case "serve":
		return uvmServe(args[1:])
	case "stop":
		return uvmStop(args[1:])
	case "list":
		return uvmList()
	}
	return 2, usageError{fmt.Errorf("uvm %q: start, stop, list or serve", args[0])}
}
