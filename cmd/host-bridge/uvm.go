package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// A long-lived utility VM: `uvm start` boots one in the background (`uvm
// serve`, which owns the VM) and every other verb reaches its agent with
// --uvm NAME. On Linux the server relays every port the agent dials to a
// unix socket directory, where verbs reach it exactly as they reach a
// host-mode agent (uvm_linux.go); on Windows the verbs listen on the VM's
// hvsockets themselves (uvm_windows.go).

// uvmDir holds one named VM's state: its server's pid, log and ready
// marker, and what verbs need to reach its agent.
func uvmDir(name string) string { return filepath.Join(uvmRoot(), name) }

func validUVMName(name string) bool {
	if name == "" || len(name) > 32 || name[0] == '.' {
		return false
	}
	return !strings.ContainsFunc(name, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
	})
}

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

// uvmStart runs `uvm serve` detached and waits until its agent is ready.
func uvmStart(args []string) (int, error) {
	fs := flag.NewFlagSet("uvm start", flag.ContinueOnError)
	name := fs.String("name", "default", "the VM's name")
	vf := addVMFlags(fs)
	if err := fs.Parse(args); err != nil {
		return 2, usageError{err}
	}
	if !validUVMName(*name) {
		return 2, usageError{fmt.Errorf("uvm name %q: letters, digits, '-', '_', '.'", *name)}
	}
	// A driver this OS cannot run fails here, not in the background.
	if err := vf.checkDriver(); err != nil {
		return 1, err
	}
	dir := uvmDir(*name)
	if pid, ok := uvmPid(*name); ok {
		return 1, fmt.Errorf("uvm %q is already running (pid %d)", *name, pid)
	}
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 1, err
	}
	logf, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		return 1, err
	}
	defer logf.Close()
	self, err := os.Executable()
	if err != nil {
		return 1, err
	}
	cmd := exec.Command(self, append([]string{"uvm", "serve"}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = detached()
	if err := cmd.Start(); err != nil {
		return 1, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	ready := filepath.Join(dir, "ready")
	deadline := time.After(vmBootTimeout)
	for {
		if _, err := os.Stat(ready); err == nil {
			fmt.Printf("uvm %s running; %s\n", *name, uvmReachedBy(*name))
			return 0, nil
		}
		select {
		case err := <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "log"))
			return 1, fmt.Errorf("uvm %q failed to start (%v):\n%s", *name, err, log)
		case <-deadline:
			cmd.Process.Kill()
			return 1, fmt.Errorf("uvm %q: not ready after %v", *name, vmBootTimeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// uvmPid returns the running server's pid for name.
func uvmPid(name string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(uvmDir(name), "pid"))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || !processAlive(pid) {
		return 0, false
	}
	return pid, true
}

func uvmStop(args []string) (int, error) {
	fs := flag.NewFlagSet("uvm stop", flag.ContinueOnError)
	name := fs.String("name", "default", "the VM's name")
	if err := fs.Parse(args); err != nil {
		return 2, usageError{err}
	}
	if !validUVMName(*name) {
		return 2, usageError{fmt.Errorf("uvm name %q is not valid", *name)}
	}
	if pid, ok := uvmPid(*name); ok {
		stopServer(*name, pid)
	}
	return 0, os.RemoveAll(uvmDir(*name))
}

func uvmList() (int, error) {
	ents, err := os.ReadDir(uvmRoot())
	if err != nil && !os.IsNotExist(err) {
		return 1, err
	}
	fmt.Printf("%-16s %-8s %s\n", "NAME", "PID", uvmAgentColumn)
	for _, e := range ents {
		pid, ok := uvmPid(e.Name())
		state := strconv.Itoa(pid)
		if !ok {
			state = "stopped"
		}
		fmt.Printf("%-16s %-8s %s\n", e.Name(), state, uvmAgentAt(e.Name()))
	}
	return 0, nil
}
