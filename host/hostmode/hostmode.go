//go:build linux

// Package hostmode owns running the real gcs agent as a process on this host
// instead of in a utility VM: in a private mount namespace, reached over the
// unix-socket transport in a directory. It is how tests and `host-bridge
// exec` drive the agent without a VM.
package hostmode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/uvmgcs/gcs/host"
	"github.com/uvmgcs/gcs/transport"
)

// Config says how to start the agent.
type Config struct {
	// Binary is the gcs executable.
	Binary string
	// Dir holds the unix sockets; a fresh temporary directory if empty.
	Dir string
	// StateRoot is the agent's -state-root; Dir/state if empty.
	StateRoot string
	// LogLevel is the agent's -loglevel ("info" if empty).
	LogLevel string
	// Stderr receives the agent's log; discarded if nil.
	Stderr io.Writer
	// Args are extra agent flags.
	Args []string
	// Host configures the guest connection (its IO listener is set here).
	Host host.Config
}

// Agent is a running gcs process and its bridge listener.
type Agent struct {
	cmd      *exec.Cmd
	dir      string
	ownDir   bool
	listener net.Listener
	hostCfg  host.Config
	exited   chan struct{}
	exitErr  error
	once     sync.Once
}

// Start launches the agent and returns once it has dialed the bridge port;
// Connect then negotiates.
func Start(ctx context.Context, cfg Config) (*Agent, error) {
	a := &Agent{dir: cfg.Dir, exited: make(chan struct{}), hostCfg: cfg.Host}
	if a.dir == "" {
		d, err := os.MkdirTemp("", "gcs-hostmode-")
		if err != nil {
			return nil, err
		}
		a.dir, a.ownDir = d, true
	}
	u := transport.Unix{Dir: a.dir}
	a.hostCfg.IO = u
	l, err := u.Listen(transport.BridgePort)
	if err != nil {
		a.removeDir()
		return nil, err
	}
	a.listener = l
	state := cfg.StateRoot
	if state == "" {
		state = a.dir + "/state"
	}
	level := cfg.LogLevel
	if level == "" {
		level = "info"
	}
	args := append([]string{"-transport", "unix:" + a.dir, "-state-root", state, "-loglevel", level}, cfg.Args...)
	a.cmd = exec.Command(cfg.Binary, args...)
	a.cmd.Stderr = cfg.Stderr
	a.cmd.SysProcAttr = &syscall.SysProcAttr{
		// A private mount namespace (Go makes / rprivate in it): nothing
		// the agent mounts is seen by, or left on, this host.
		Unshareflags: syscall.CLONE_NEWNS,
		Pdeathsig:    syscall.SIGKILL,
		Setpgid:      true,
	}
	if err := a.cmd.Start(); err != nil {
		l.Close()
		a.removeDir()
		return nil, fmt.Errorf("start %s: %w", cfg.Binary, err)
	}
	go func() {
		a.exitErr = a.cmd.Wait()
		close(a.exited)
	}()
	return a, nil
}

// Dir is the socket directory.
func (a *Agent) Dir() string { return a.dir }

// Pid is the agent's process id.
func (a *Agent) Pid() int { return a.cmd.Process.Pid }

// Exited is closed when the agent process has exited.
func (a *Agent) Exited() <-chan struct{} { return a.exited }

// Accept waits for the agent's next bridge connection. It fails early if the
// agent exits first or ctx ends (and then stops listening).
func (a *Agent) Accept(ctx context.Context) (net.Conn, error) {
	c, err := host.AcceptConn(ctx, a.listener, a.exited)
	if err != nil {
		return nil, a.exitedErr(err)
	}
	return c, nil
}

// Connect accepts the agent's next bridge connection and negotiates on it
// (host.Accept).
func (a *Agent) Connect(ctx context.Context) (*host.GuestConnection, error) {
	gc, err := host.Accept(ctx, a.listener, a.exited, a.hostCfg)
	if err != nil {
		return nil, a.exitedErr(err)
	}
	return gc, nil
}

// exitedErr adds the agent's exit to err when the agent has exited.
func (a *Agent) exitedErr(err error) error {
	select {
	case <-a.exited:
		return fmt.Errorf("agent exited (%v): %w", a.exitErr, err)
	default:
		return err
	}
}

// Kill sends SIGKILL to the agent's process group and waits for it.
func (a *Agent) Kill() error {
	_ = syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
	<-a.exited
	return nil
}

// Close stops the agent (SIGTERM, then SIGKILL after grace) and removes what
// Start created.
func (a *Agent) Close(grace time.Duration) error {
	var err error
	a.once.Do(func() {
		_ = a.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-a.exited:
		case <-time.After(grace):
			err = errors.New("agent ignored SIGTERM; killed")
		}
		// Processes the agent left behind in its group go too.
		_ = syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
		<-a.exited
		a.listener.Close()
		a.removeDir()
	})
	return err
}

func (a *Agent) removeDir() {
	if a.ownDir {
		os.RemoveAll(a.dir)
	}
}
