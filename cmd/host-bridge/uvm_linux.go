package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uvmgcs/gcs/transport"
)

// uvmRoot holds one directory per named VM.
func uvmRoot() string { return "/run/uvmgcs/uvm" }

// uvmSocketDir is where a named VM's relay puts the agent's ports.
func uvmSocketDir(name string) string { return filepath.Join(uvmDir(name), "s") }

// uvmListener is where a verb listens for the agent of the VM name: the
// relay's socket directory.
func uvmListener(name string) (transport.Listener, string, error) {
	u := transport.Unix{Dir: uvmSocketDir(name)}
	return u, u.Path(transport.BridgePort), nil
}

// uvmAgentColumn and uvmAgentAt are what uvm list says about reaching a
// VM's agent.
const uvmAgentColumn = "SOCKET DIR"

func uvmAgentAt(name string) string { return uvmSocketDir(name) }

func uvmReachedBy(name string) string {
	return "its agent is at --socket-dir " + uvmSocketDir(name) + " (or --uvm " + name + ")"
}

// detached starts the server in a session of its own.
func detached() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setsid: true} }

func processAlive(pid int) bool { return unix.Kill(pid, 0) == nil }

// stopServer asks the server to stop (SIGTERM: it shuts the VM down) and
// kills it when it has not within 20s.
func stopServer(_ string, pid int) {
	unix.Kill(pid, unix.SIGTERM)
	for i := 0; i < 400 && unix.Kill(pid, 0) == nil; i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if unix.Kill(pid, 0) == nil {
		unix.Kill(pid, unix.SIGKILL)
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
	vf.console = true // into the log
	dir := uvmDir(*name)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	m, release, err := vf.machine()
	if err != nil {
		return 1, err
	}
	defer release()
	bctx, cancel := context.WithTimeout(ctx, vmBootTimeout)
	err = m.Start(bctx)
	cancel()
	if err != nil {
		return 1, err
	}
	defer m.Shutdown(context.Background())
	mux, ok := m.Agent().(*transport.MuxHost)
	if !ok {
		return 1, errors.New("the VM's agent channel is not multiplexed")
	}
	if err := os.MkdirAll(uvmSocketDir(*name), 0o700); err != nil {
		return 1, err
	}
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
