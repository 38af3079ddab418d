package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/Microsoft/go-winio/pkg/guid"
	"golang.org/x/sys/windows"

	"github.com/uvmgcs/gcs/protocol"
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

// uvmListener is where a verb listens for the agent of the VM name: its
// hvsockets.
func uvmListener(name string) (transport.Listener, string, error) {
	id, err := runtimeID(name)
	if err != nil {
		return nil, "", err
	}
	return transport.HvSock{VMID: id}, "hvsocket of VM " + id.String(), nil
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
	if gc, cleanup, err := connect(ctx, "", name, ""); err == nil {
		gc.RPC(ctx, protocol.ShutdownForced, &protocol.RequestBase{ContainerID: protocol.UVMContainerID}, nil)
		cleanup()
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
	lm, ok := m.(interface{ Listener() transport.Listener })
	if !ok {
		return 1, errors.New("the VM driver offers no hvsocket listener")
	}
	hv, ok := lm.Listener().(transport.HvSock)
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
	accepted := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			c.Close()
		}
		accepted <- err
	}()
	select {
	case err := <-accepted:
		return err
	case <-dead:
		return errors.New("the VM stopped before its agent started")
	case <-time.After(vmBootTimeout):
		return errors.New("the agent did not start")
	}
}
