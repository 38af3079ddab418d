//go:build linux

// Package named owns long-lived utility VMs by name: a VM that outlives
// the processes that use it, the way a shim may restart while its VM must
// not. A relay process (Serve) boots the VM under QEMU, owns it, and
// carries every port its agent dials to unix sockets in the VM's
// directory; any process then reaches it by name (Attach), adds and
// releases resources, runs containers, detaches, and a later process
// attaches again and finds the containers and the resource table where
// the last one left them.
//
//	<root>/<name>/pid        the relay's pid
//	<root>/<name>/log        the relay's output and the VM's console
//	<root>/<name>/ready      exists once the agent has dialed in
//	<root>/<name>/s/         the agent's ports (transport.Unix)
//	<root>/<name>/vm/        QEMU's state directory (qemu.Attach)
//	<root>/<name>/uvm.json   the resource table (uvm.Options.StateFile)
package named

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/uvmgcs/gcs/host/uvm"
	"github.com/uvmgcs/gcs/host/vm"
	"github.com/uvmgcs/gcs/host/vm/qemu"
	"github.com/uvmgcs/gcs/internal/log"
	"github.com/uvmgcs/gcs/transport"
)

// DefaultRoot is where VMs are named unless a Store says otherwise.
const DefaultRoot = "/run/uvmgcs/uvm"

// Store is a directory of named VMs.
type Store struct {
	Root string // DefaultRoot if empty
}

func (s Store) root() string {
	if s.Root == "" {
		return DefaultRoot
	}
	return s.Root
}

// ValidName reports whether name can name a VM: 1-32 letters, digits,
// '-', '_' or '.', not starting with '.'.
func ValidName(name string) bool {
	if name == "" || len(name) > 32 || name[0] == '.' {
		return false
	}
	return !strings.ContainsFunc(name, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
	})
}

func (s Store) check(name string) error {
	if !ValidName(name) {
		return fmt.Errorf("uvm name %q: letters, digits, '-', '_', '.': %w", name, errdefs.ErrInvalidArgument)
	}
	return nil
}

// Dir is the directory of VM name.
func (s Store) Dir(name string) string { return filepath.Join(s.root(), name) }

// SocketDir is where VM name's relay puts its agent's ports.
func (s Store) SocketDir(name string) string { return filepath.Join(s.Dir(name), "s") }

func (s Store) vmDir(name string) string     { return filepath.Join(s.Dir(name), "vm") }
func (s Store) stateFile(name string) string { return filepath.Join(s.Dir(name), "uvm.json") }

// Pid is the pid of VM name's relay, if it runs.
func (s Store) Pid(name string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(s.Dir(name), "pid"))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 || unix.Kill(pid, 0) != nil {
		return 0, false
	}
	return pid, true
}

// Info is one named VM.
type Info struct {
	Name      string
	Pid       int // the relay's; 0 when it is not running
	SocketDir string
}

// List returns the named VMs, running or not.
func (s Store) List() ([]Info, error) {
	ents, err := os.ReadDir(s.root())
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	var out []Info
	for _, e := range ents {
		pid, _ := s.Pid(e.Name())
		out = append(out, Info{Name: e.Name(), Pid: pid, SocketDir: s.SocketDir(e.Name())})
	}
	return out, nil
}

// Start runs cmd, a program that calls Serve for name (host-bridge uvm
// serve), detached in a session of its own with its output in the VM's
// log, and returns once its agent is up, or with the log when the relay
// fails. A VM of that name that runs already is errdefs.ErrAlreadyExists.
func (s Store) Start(ctx context.Context, name string, cmd *exec.Cmd) error {
	if err := s.check(name); err != nil {
		return err
	}
	if pid, ok := s.Pid(name); ok {
		return fmt.Errorf("uvm %q is already running (pid %d): %w", name, pid, errdefs.ErrAlreadyExists)
	}
	dir := s.Dir(name)
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		if _, err := os.Stat(filepath.Join(dir, "ready")); err == nil {
			return nil
		}
		select {
		case err := <-exited:
			b, _ := os.ReadFile(filepath.Join(dir, "log"))
			return fmt.Errorf("uvm %q failed to start (%v):\n%s", name, err, b)
		case <-ctx.Done():
			cmd.Process.Kill()
			<-exited
			return fmt.Errorf("uvm %q: %w", name, ctx.Err())
		case <-t.C:
		}
	}
}

// Stop stops VM name: SIGTERM to its relay (which shuts the VM down),
// SIGKILL after 20 s, then its directory goes. A VM that is not running
// is only removed.
func (s Store) Stop(name string) error {
	if err := s.check(name); err != nil {
		return err
	}
	if pid, ok := s.Pid(name); ok {
		unix.Kill(pid, unix.SIGTERM)
		for i := 0; i < 400 && unix.Kill(pid, 0) == nil; i++ {
			time.Sleep(50 * time.Millisecond)
		}
		if unix.Kill(pid, 0) == nil {
			unix.Kill(pid, unix.SIGKILL)
		}
	}
	return os.RemoveAll(s.Dir(name))
}

// Serve is the relay: it boots a VM from cfg and opts (its state in the
// VM's directory), relays every port its agent dials to SocketDir, marks
// the VM ready once the agent has dialed in, and runs until ctx ends
// (then it shuts the VM down) or the VM stops.
func (s Store) Serve(ctx context.Context, name string, cfg vm.Config, opts qemu.Options) error {
	if err := s.check(name); err != nil {
		return err
	}
	dir := s.Dir(name)
	cfg.StateDir = s.vmDir(name)
	m := qemu.New(cfg, opts)
	if err := m.Start(ctx); err != nil {
		return err
	}
	defer m.Shutdown(context.WithoutCancel(ctx))
	mux, ok := m.Agent().(*transport.MuxHost)
	if !ok {
		return errors.New("the VM's agent channel is not multiplexed")
	}
	sock := transport.Unix{Dir: s.SocketDir(name)}
	if err := os.MkdirAll(sock.Dir, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return err
	}
	// The agent's first dial of the bridge port says it is up.
	up := make(chan struct{})
	var once sync.Once
	mux.SetFallback(func(port uint32, c net.Conn) {
		if port == transport.BridgePort {
			once.Do(func() { close(up) })
		}
		go relay(ctx, sock, port, c)
	})
	select {
	case <-up:
	case <-m.Done():
		return errors.New("the VM stopped before its agent started")
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := m.ReleaseBootFiles(); err != nil {
		log.G(ctx).WithError(err).Debug("release boot files")
	}
	if err := os.WriteFile(filepath.Join(dir, "ready"), nil, 0o644); err != nil {
		return err
	}
	log.G(ctx).WithField("uvm", name).Info("long-lived utility VM ready")
	select {
	case <-ctx.Done():
	case <-m.Done():
	case <-mux.Done():
	}
	return nil
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

// Attach reaches VM name from this process: its hot-plug (qemu.Attach),
// its agent's next bridge connection through the relay, and its resource
// table. Only one process is attached at a time: the agent serves one
// bridge connection and QEMU's second monitor one client; a second Attach
// waits (within ctx) until the first has detached. opts.StateFile is set
// to the VM's table.
func (s Store) Attach(ctx context.Context, name string, opts uvm.Options) (*uvm.UVM, error) {
	if err := s.check(name); err != nil {
		return nil, err
	}
	if _, ok := s.Pid(name); !ok {
		return nil, fmt.Errorf("uvm %q is not running: %w", name, errdefs.ErrNotFound)
	}
	m, err := qemu.Attach(ctx, s.vmDir(name), transport.Unix{Dir: s.SocketDir(name)})
	if err != nil {
		return nil, err
	}
	opts.StateFile = s.stateFile(name)
	u, err := uvm.Attach(ctx, m, opts)
	if err != nil {
		m.Detach()
		return nil, fmt.Errorf("uvm %q: %w", name, err)
	}
	return u, nil
}

// Agent is where VM name's agent is reached (no hot-plug, no resource table):
// enough for verbs that look at containers or run processes, and it does
// not hold the VM's monitor.
func (s Store) Agent(name string) (transport.Listener, error) {
	if err := s.check(name); err != nil {
		return nil, err
	}
	if _, ok := s.Pid(name); !ok {
		return nil, fmt.Errorf("uvm %q is not running: %w", name, errdefs.ErrNotFound)
	}
	return transport.Unix{Dir: s.SocketDir(name)}, nil
}
