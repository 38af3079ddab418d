package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/Microsoft/go-winio/pkg/guid"
	"golang.org/x/sys/windows"

	"github.com/uvmgcs/gcs/host"
	"github.com/uvmgcs/gcs/transport"
)

// On Windows the server only owns the VM: HCS terminates a compute system
// whose last handle closes, so a process must hold it. Verbs listen on
// the VM's hvsockets themselves (an elevated process may bind them), with
// the VM's runtime ID from <uvmDir>/runtime-id, and the agent, which
// redials, reaches whichever verb listens.

// uvmRoot holds one directory per named VM.
func uvmRoot() string {
	base := os.Getenv("ProgramData")
	if base == "" {
		base = `C:\ProgramData`
	}
	return filepath.Join(base, "uvmgcs", "uvm")
}

// runtimeID reads the runtime ID of the VM name, which hvsocket addresses
// it by.
func runtimeID(name string) (guid.GUID, error) {
	b, err := os.ReadFile(filepath.Join(uvmDir(name), "runtime-id"))
	if err != nil {
		return guid.GUID{}, fmt.Errorf("uvm %q is not running (host-bridge uvm start --name %s): %w", name, name, err)
	}
	return guid.FromString(strings.TrimSpace(string(b)))
}

// reachUVM takes the next connection of the named VM's agent on its
// hvsockets. There is no owner: the Windows server holds the VM only.
func reachUVM(ctx context.Context, name string) (*reached, error) {
	id, err := runtimeID(name)
	if err != nil {
		return nil, err
	}
	return accept(ctx, transport.HvSock{VMID: id})
}

// uvmAgentColumn and uvmAgentAt are what uvm list says about reaching a
// VM's agent.
const uvmAgentColumn = "RUNTIME ID"

func uvmAgentAt(name string) string {
	id, err := runtimeID(name)
	if err != nil {
		return "-"
	}
	return id.String()
}

func uvmReachedBy(name string) string {
	return "other verbs reach its agent over hvsocket with --uvm " + name
}

// detached starts the server with no console, in a process group of its
// own, so the console's Ctrl-C does not reach it.
func detached() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{CreationFlags: windows.CREATE_NEW_PROCESS_GROUP | windows.DETACHED_PROCESS, HideWindow: true}
}

func processAlive(pid int) bool {
	h, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION, false, uint32(pid))
	if err != nil {
		return false
	}
	defer windows.CloseHandle(h)
	var code uint32
	const stillActive = 259
	return windows.GetExitCodeProcess(h, &code) == nil && code == stillActive
}

// stopServer has the agent power the VM off, which ends the server, and
// terminates the server when that has not happened within 10s: HCS then
// terminates the VM, whose last handle closed. A Windows process has no
// SIGTERM to ask with.
func stopServer(name string, pid int) {
	h, err := windows.OpenProcess(windows.PROCESS_TERMINATE|windows.SYNCHRONIZE, false, uint32(pid))
	if err != nil {
		return
	}
	defer windows.CloseHandle(h)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if r, err := reach(ctx, "", name, ""); err == nil {
		r.gc.ShutdownVM(ctx)
		r.close()
	}
	const grace = 10 * time.Second
	if ev, _ := windows.WaitForSingleObject(h, uint32(grace/time.Millisecond)); ev == windows.WAIT_OBJECT_0 {
		return
	}
	windows.TerminateProcess(h, 1)
	windows.WaitForSingleObject(h, windows.INFINITE)
}

// uvmServe boots the VM, waits for its agent's first connection, records
// the VM's runtime ID and holds the VM until it stops or the server is
// told to.
func uvmServe(args []string) (int, error) {
	fs := flag.NewFlagSet("uvm serve", flag.ContinueOnError)
	name := fs.String("name", "default", "the VM's name")
	vf := addVMFlags(fs)
	if err := fs.Parse(args); err != nil {
		return 2, usageError{err}
	}
	vf.console = true // into the log
	dir := uvmDir(*name)
	m, release, err := vf.machine()
	if err != nil {
		return 1, err
	}
	defer release()
	ctx := context.Background()
	bctx, cancel := context.WithTimeout(ctx, vmBootTimeout)
	err = m.Start(bctx)
	cancel()
	if err != nil {
		return 1, err
	}
	defer m.Shutdown(ctx)
	hv, ok := m.Agent().(transport.HvSock)
	if !ok {
		return 1, errors.New("the VM has no hvsocket listener")
	}
	if err := waitForAgent(hv, m.Done()); err != nil {
		return 1, err
	}
	for _, f := range []struct{ name, data string }{
		{"runtime-id", hv.VMID.String()},
		{"pid", strconv.Itoa(os.Getpid())},
		{"ready", ""},
	} {
		if err := os.WriteFile(filepath.Join(dir, f.name), []byte(f.data), 0o644); err != nil {
			return 1, err
		}
	}
	<-m.Done()
	return 0, nil
}

// waitForAgent accepts the agent's first bridge connection and closes it:
// the agent is up, and dials again for the next verb.
func waitForAgent(hv transport.HvSock, dead <-chan struct{}) error {
	l, err := hv.Listen(transport.BridgePort)
	if err != nil {
		return err
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), vmBootTimeout)
	defer cancel()
	c, err := host.AcceptConn(ctx, l, dead)
	if err != nil {
		return err
	}
	return c.Close()
}

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
