package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uvmgcs/gcs/host/vm"
	"github.com/uvmgcs/gcs/host/vm/qemu"
	"github.com/uvmgcs/gcs/transport"
)

// A long-lived utility VM: `uvm start` boots one in the background and
// relays its agent onto a unix socket directory, where every other verb
// (--uvm NAME, or --socket-dir) reaches it exactly as it reaches a
// host-mode agent.

// uvmRoot holds one directory per named VM: its relay's pid, log and
// socket directory.
const uvmRoot = "/run/uvmgcs/uvm"

func uvmDir(name string) string       { return filepath.Join(uvmRoot, name) }
func uvmSocketDir(name string) string { return filepath.Join(uvmDir(name), "s") }
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
	addVMFlags(fs)
	if err := fs.Parse(args); err != nil {
		return 2, usageError{err}
	}
	if !validUVMName(*name) {
		return 2, usageError{fmt.Errorf("uvm name %q: letters, digits, '-', '_', '.'", *name)}
	}
	dir := uvmDir(*name)
	if pid, ok := uvmPid(*name); ok {
		return 1, fmt.Errorf("uvm %q is already running (pid %d)", *name, pid)
	}
	os.RemoveAll(dir)
	if err := os.MkdirAll(uvmSocketDir(*name), 0o700); err != nil {
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
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 1, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	ready := filepath.Join(dir, "ready")
	deadline := time.After(vmBootTimeout)
	for {
		if _, err := os.Stat(ready); err == nil {
			fmt.Printf("uvm %s running; its agent is at --socket-dir %s (or --uvm %s)\n", *name, uvmSocketDir(*name), *name)
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

// uvmServe boots the VM and relays every port its agent dials to the
// socket directory until SIGTERM.
func uvmServe(args []string) (int, error) {
	fs := flag.NewFlagSet("uvm serve", flag.ContinueOnError)
	name := fs.String("name", "default", "the VM's name")
	vf := addVMFlags(fs)
	if err := fs.Parse(args); err != nil {
		return 2, usageError{err}
	}
	dir := uvmDir(*name)
	ctx, stop := signal.NotifyContext(context.Background(), unix.SIGINT, unix.SIGTERM)
	defer stop()
	m := qemu.New(vm.Config{
		Kernel: vf.kernel, Initrd: vf.initrd, MemoryMiB: vf.memMiB, CPUs: vf.cpus, Accel: vf.accel,
		KernelArgs: agentLogArg(vf.agentLog), ConsoleLog: os.Stderr,
	})
	bctx, cancel := context.WithTimeout(ctx, vmBootTimeout)
	err := m.Start(bctx)
	cancel()
	if err != nil {
		return 1, err
	}
	defer m.Shutdown(context.Background())
	mux, err := transport.NewMuxHost(m.AgentConn())
	if err != nil {
		return 1, err
	}
	defer mux.Close()
	if err := os.WriteFile(filepath.Join(dir, "pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return 1, err
	}
	// The agent's first dial of the bridge port says it is up: ready.
	sock := transport.Unix{Dir: uvmSocketDir(*name)}
	agentUp := make(chan struct{})
	var once sync.Once
	mux.SetFallback(func(port uint32, c net.Conn) {
		if port == transport.BridgePort {
			once.Do(func() { close(agentUp) })
		}
		go relay(ctx, sock, port, c)
	})
	select {
	case <-agentUp:
	case <-m.Done():
		return 1, errors.New("the VM stopped before its agent started")
	case <-time.After(vmBootTimeout):
		return 1, errors.New("the agent did not start")
	case <-ctx.Done():
		return 1, ctx.Err()
	}
	if err := os.WriteFile(filepath.Join(dir, "ready"), nil, 0o644); err != nil {
		return 1, err
	}
	select {
	case <-ctx.Done():
	case <-m.Done():
	case <-mux.Done():
	}
	return 0, nil
}

func agentLogArg(level string) string {
	if level == "" {
		return ""
	}
	return "gcs.loglevel=" + level
}

// relay splices the agent's stream for port to the socket directory's
// listener for it; with no listener the stream closes and the agent dials
// again later.
func relay(ctx context.Context, sock transport.Unix, port uint32, c net.Conn) {
	defer c.Close()
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	peer, err := sock.Dial(dctx, port)
	cancel()
	if err != nil {
		return
	}
	defer peer.Close()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		io.Copy(dst, src)
		transport.CloseWrite(dst)
		done <- struct{}{}
	}
	go pipe(peer, c)
	go pipe(c, peer)
	<-done
	<-done
}

// uvmPid returns the running relay's pid for name.
func uvmPid(name string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(uvmDir(name), "pid"))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || unix.Kill(pid, 0) != nil {
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
		unix.Kill(pid, unix.SIGTERM)
		for i := 0; i < 400 && unix.Kill(pid, 0) == nil; i++ {
			time.Sleep(50 * time.Millisecond)
		}
		if unix.Kill(pid, 0) == nil {
			unix.Kill(pid, unix.SIGKILL)
		}
	}
	return 0, os.RemoveAll(uvmDir(*name))
}

func uvmList() (int, error) {
	ents, err := os.ReadDir(uvmRoot)
	if err != nil && !os.IsNotExist(err) {
		return 1, err
	}
	fmt.Printf("%-16s %-8s %s\n", "NAME", "PID", "SOCKET DIR")
	for _, e := range ents {
		pid, ok := uvmPid(e.Name())
		state := strconv.Itoa(pid)
		if !ok {
			state = "stopped"
		}
		fmt.Printf("%-16s %-8s %s\n", e.Name(), state, uvmSocketDir(e.Name()))
	}
	return 0, nil
}
