package runtime

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uvmgcs/gcs/internal/log"
	"github.com/uvmgcs/gcs/internal/timerslack"
	"github.com/uvmgcs/gcs/protocol"
	"github.com/uvmgcs/gcs/transport"
)

// DrainGrace bounds how long an exit waits for the process's output to
// drain once the process has exited.
const DrainGrace = 5 * time.Second

// Processes runs processes in the utility VM itself (CreateInUtilityVM).
// It implements the bridge's Processes interface.
type Processes struct {
	dialer transport.Dialer
	reaper *Reaper

	mu     sync.Mutex
	procs  map[int]*process
	closed bool
}

type process struct {
	pid   int
	cmd   *exec.Cmd
	relay *Relay
	done  chan struct{} // closed once exited and drained
	code  int
}

// NewProcesses returns a process table whose processes dial their stdio
// with d and are started through r.
func NewProcesses(d transport.Dialer, r *Reaper) *Processes {
	return &Processes{dialer: d, reaper: r, procs: make(map[int]*process)}
}

// Start starts a process and returns its pid. Its stdio connections are
// dialed first; the host is already listening on their ports.
func (ps *Processes) Start(ctx context.Context, params *protocol.ProcessParameters, settings protocol.VsockStdioRelaySettings) (int, error) {
	args, err := Argv(params)
	if err != nil {
		return 0, err
	}
	env, err := Env(params.Environment)
	if err != nil {
		return 0, err
	}
	if err := checkSize(args, env); err != nil {
		return 0, err
	}
	dir := params.WorkingDirectory
	if dir == "" {
		dir = "/"
	}
	path, err := lookPath(args[0], env, dir)
	if err != nil {
		return 0, err
	}
	stdio, err := DialStdio(ctx, ps.dialer, settings)
	if err != nil {
		return 0, err
	}
	var relay *Relay
	if params.EmulateConsole {
		var h, w uint16
		if len(params.ConsoleSize) == 2 {
			h, w = params.ConsoleSize[0], params.ConsoleSize[1]
		}
		relay, err = NewPtyRelay(stdio, h, w)
	} else {
		relay, err = NewPipeRelay(stdio)
	}
	if err != nil {
		stdio.Close()
		return 0, err
	}

	cmd := &exec.Cmd{Path: path, Args: args, Env: env, Dir: dir}
	child := relay.Child()
	if child[0] != nil {
		cmd.Stdin = child[0]
	}
	if child[1] != nil {
		cmd.Stdout = child[1]
	}
	if child[2] != nil {
		cmd.Stderr = child[2]
	}
	// Processes die with the agent: nothing runs on unsupervised.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if relay.Terminal() {
		cmd.SysProcAttr.Setsid = true
		cmd.SysProcAttr.Setctty = true
		cmd.SysProcAttr.Ctty = 0
	}

	ps.mu.Lock()
	closed := ps.closed
	ps.mu.Unlock()
	if closed {
		relay.Close()
		return 0, fmt.Errorf("agent is shutting down: %w", protocol.HrVmcomputeInvalidState)
	}
	pid, err := ps.reaper.Start(func() (int, error) {
		if err := timerslack.Start(cmd); err != nil {
			return 0, err
		}
		return cmd.Process.Pid, nil
	})
	if err != nil {
		relay.Close()
		if errors.Is(err, fs.ErrNotExist) {
			return 0, fmt.Errorf("start %s: %w: %w", args[0], err, protocol.HrNotFound)
		}
		return 0, fmt.Errorf("start %s: %w", args[0], err)
	}
	relay.Start()
	p := &process{pid: pid, cmd: cmd, relay: relay, done: make(chan struct{})}
	ps.mu.Lock()
	ps.procs[pid] = p
	ps.mu.Unlock()
	ps.reaper.OnExit(pid, func() { p.wait(ctx, ps.reaper) })
	return pid, nil
}

// wait collects the exit status of the exited process, then lets the
// output drain (bounded) so the host has every byte before it learns of
// the exit.
func (p *process) wait(ctx context.Context, r *Reaper) {
	_ = p.cmd.Wait() // returns at once; the status is in ProcessState
	r.Untrack(p.pid)
	p.code = ExitCode(p.cmd.ProcessState.Sys().(syscall.WaitStatus))
	if !p.relay.WaitDrained(DrainGrace) {
		log.G(ctx).WithField(log.FieldProcessID, p.pid).Warn("output still open after exit; cut off")
	}
	p.relay.Close()
	close(p.done)
}

// ExitCode is a wait status as a shell reports it: the exit status, or
// 128+signal for a process a signal killed.
func ExitCode(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

func (ps *Processes) lookup(pid int) (*process, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	p, ok := ps.procs[pid]
	if !ok {
		return nil, fmt.Errorf("process %d: %w", pid, protocol.HrNotFound)
	}
	return p, nil
}

// Wait returns the process's exit code once it has exited and its output has
// drained. The first delivered result forgets the process. A deadline on ctx
// ends the wait with HrVmcomputeTimeout.
func (ps *Processes) Wait(ctx context.Context, pid int) (int, error) {
	p, err := ps.lookup(pid)
	if err != nil {
		return 0, err
	}
	select {
	case <-p.done:
		ps.mu.Lock()
		if ps.procs[pid] == p {
			delete(ps.procs, pid)
		}
		ps.mu.Unlock()
		return p.code, nil
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return 0, fmt.Errorf("wait for process %d: %w", pid, protocol.HrVmcomputeTimeout)
		}
		return 0, ctx.Err()
	}
}

// Signal sends sig to the process; 0 means SIGKILL (a terminate request).
func (ps *Processes) Signal(ctx context.Context, pid int, sig int) error {
	p, err := ps.lookup(pid)
	if err != nil {
		return err
	}
	if sig == 0 {
		sig = int(unix.SIGKILL)
	}
	if sig < 1 || sig > 64 {
		return fmt.Errorf("signal %d: %w", sig, protocol.HrInvalidArg)
	}
	if err := p.cmd.Process.Signal(syscall.Signal(sig)); err != nil {
		if errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("process %d has exited: %w", pid, protocol.HrNotFound)
		}
		return fmt.Errorf("signal process %d: %w", pid, err)
	}
	return nil
}

// ResizeConsole resizes the process's terminal.
func (ps *Processes) ResizeConsole(ctx context.Context, pid int, height, width uint16) error {
	p, err := ps.lookup(pid)
	if err != nil {
		return err
	}
	return p.relay.Resize(height, width)
}

// Close kills every process still running and waits (bounded by ctx and
// the drain grace) until they are collected.
func (ps *Processes) Close(ctx context.Context) {
	ps.mu.Lock()
	ps.closed = true
	procs := make([]*process, 0, len(ps.procs))
	for _, p := range ps.procs {
		procs = append(procs, p)
	}
	ps.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, DrainGrace+time.Second)
	defer cancel()
	for _, p := range procs {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
	}
	for _, p := range procs {
		select {
		case <-p.done:
		case <-ctx.Done():
			return
		}
	}
}

// lookPath finds name as exec would with the process's own PATH.
func lookPath(name string, env []string, dir string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	path := DefaultPath
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			path = v
		}
	}
	for _, d := range filepath.SplitList(path) {
		if d == "" {
			d = "."
		}
		if !filepath.IsAbs(d) {
			d = filepath.Join(dir, d)
		}
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%q not found in PATH: %w", name, protocol.HrNotFound)
}
