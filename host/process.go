package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/uvmgcs/gcs/protocol"
	"github.com/uvmgcs/gcs/transport"
)

// Process is a process the guest runs: in the utility VM or in a container.
type Process struct {
	gc  *GuestConnection
	cid string
	pid int

	stdin          net.Conn
	stdout, stderr *eofCloser

	exec     bool // exec'd into a container: its exit is an EventExecExit
	exited   chan struct{}
	exitCode int
	waitErr  error

	closeOnce sync.Once
}

// CreateProcess starts a process in the utility VM.
func (gc *GuestConnection) CreateProcess(ctx context.Context, params *protocol.ProcessParameters) (*Process, error) {
	p := *params
	p.CreateInUtilityVM = true
	return gc.ExecProcess(ctx, protocol.UVMContainerID, &p)
}

// ExecProcess starts a process for container cid (the utility VM for
// protocol.UVMContainerID): a container's init, or an exec when
// params.OciProcess is set. The streams params asks for are connected
// before it returns.
func (gc *GuestConnection) ExecProcess(ctx context.Context, cid string, params *protocol.ProcessParameters) (*Process, error) {
	if gc.cfg.IO == nil {
		return nil, errors.New("guest connection has no stdio listener (Config.IO)")
	}
	pj, err := json.Marshal(params)
	if err != nil {
		return nil, err
	}
	// Listen before asking: the guest dials each port before it answers.
	var streams [3]*stream
	var settings protocol.VsockStdioRelaySettings
	ports := []*uint32{&settings.StdIn, &settings.StdOut, &settings.StdErr}
	for i, want := range []bool{params.CreateStdInPipe, params.CreateStdOutPipe, params.CreateStdErrPipe} {
		if !want {
			continue
		}
		port := gc.allocPort()
		s, err := listen(gc.cfg.IO, port)
		if err != nil {
			closeStreams(streams)
			return nil, fmt.Errorf("listen for stdio port %#x: %w", port, err)
		}
		streams[i], *ports[i] = s, port
	}
	var resp protocol.ExecuteProcessResponse
	err = gc.RPC(ctx, protocol.ExecuteProcess, &protocol.ExecuteProcessRequest{
		RequestBase: protocol.RequestBase{ContainerID: cid},
		Settings: protocol.ExecuteProcessSettings{
			ProcessParameters:       string(pj),
			VsockStdioRelaySettings: settings,
		},
	}, &resp)
	if err != nil {
		closeStreams(streams)
		return nil, err
	}
	p := &Process{gc: gc, cid: cid, pid: int(resp.ProcessID), exited: make(chan struct{}),
		exec: cid != protocol.UVMContainerID && len(params.OciProcess) > 0}
	var conns [3]net.Conn
	for i, s := range streams {
		if s == nil {
			continue
		}
		c, err := s.accept(ctx, gc.done)
		if err != nil {
			closeStreams(streams)
			for _, c := range conns {
				if c != nil {
					c.Close()
				}
			}
			_ = p.Kill(context.WithoutCancel(ctx)) // nothing can talk to it
			return nil, fmt.Errorf("process %d stdio: %w", p.pid, err)
		}
		conns[i] = c
	}
	p.stdin = conns[0]
	if conns[1] != nil {
		p.stdout = &eofCloser{c: conns[1]}
	}
	if conns[2] != nil {
		p.stderr = &eofCloser{c: conns[2]}
	}
	go p.waitBackground()
	return p, nil
}

// Pid is the process's id in the guest (in its container's pid namespace).
func (p *Process) Pid() int { return p.pid }

// Stdin is the process's stdin, nil if not requested. Close half-closes:
// the process reads EOF.
func (p *Process) Stdin() io.WriteCloser {
	if p.stdin == nil {
		return nil
	}
	return halfCloser{p.stdin}
}

// Stdout is the process's stdout, nil if not requested. The connection is
// closed once a read reaches EOF: a guest may hold the exit (WaitForProcess,
// a container's exit notification) until the host has closed its end, as
// hcsshim's does, so read it to the end.
func (p *Process) Stdout() io.Reader {
	if p.stdout == nil {
		return nil
	}
	return p.stdout
}

// Stderr is the process's stderr, nil if not requested; like Stdout, it
// closes at EOF.
func (p *Process) Stderr() io.Reader {
	if p.stderr == nil {
		return nil
	}
	return p.stderr
}

// CloseStdin sends EOF to the process's stdin.
func (p *Process) CloseStdin() error {
	if p.stdin == nil {
		return nil
	}
	return transport.CloseWrite(p.stdin)
}

// Signal sends sig to the process. A process that is gone is not an error;
// a signal the guest did not deliver to a live process is.
func (p *Process) Signal(ctx context.Context, sig int) error {
	err := p.gc.RPC(ctx, protocol.SignalProcess, &protocol.SignalProcessRequest{
		RequestBase: protocol.RequestBase{ContainerID: p.cid},
		ProcessID:   uint32(p.pid),
		Options:     &protocol.SignalProcessOptions{Signal: int32(sig)},
	}, nil)
	if err == nil || p.gone(err) {
		return nil
	}
	if p.cid == protocol.UVMContainerID && errors.Is(err, protocol.HrVmcomputeSystemNotFound) {
		// The guest looked the utility VM up as a container and found none:
		// it has no signal path for processes in the VM (hcsshim's guest).
		return fmt.Errorf("signal %d to process %d in the utility VM: the guest cannot signal it (%v): %w", sig, p.pid, err, protocol.HrNotImpl)
	}
	return fmt.Errorf("signal %d to process %d: %w", sig, p.pid, err)
}

// gone reports whether err, a failed SignalProcess, says the process no
// longer exists: the guest did not find the process (ERROR_NOT_FOUND), or
// did not find its container any more, or its exit is already known here.
func (p *Process) gone(err error) bool {
	select {
	case <-p.exited:
		if p.waitErr == nil {
			return true
		}
	default:
	}
	if errors.Is(err, protocol.HrNotFound) {
		return true
	}
	// VMCOMPUTE_SYSTEM_NOT_FOUND for a container: the container is gone,
	// and its processes with it. For the utility VM it means something else.
	return p.cid != protocol.UVMContainerID && errors.Is(err, protocol.HrVmcomputeSystemNotFound)
}

// Kill sends SIGKILL (9 in the Linux guest, whatever the host).
func (p *Process) Kill(ctx context.Context) error { return p.Signal(ctx, 9) }

// ResizeConsole resizes the process's terminal.
func (p *Process) ResizeConsole(ctx context.Context, height, width uint16) error {
	return p.gc.RPC(ctx, protocol.ResizeConsole, &protocol.ResizeConsoleRequest{
		RequestBase: protocol.RequestBase{ContainerID: p.cid},
		ProcessID:   uint32(p.pid),
		Height:      height,
		Width:       width,
	}, nil)
}

// waitBackground asks for the exit once, with no deadline, as soon as the
// process exists; the guest answers after its output has drained.
func (p *Process) waitBackground() {
	var resp protocol.WaitForProcessResponse
	p.waitErr = p.gc.RPC(context.Background(), protocol.WaitForProcess, &protocol.WaitForProcessRequest{
		RequestBase: protocol.RequestBase{ContainerID: p.cid},
		ProcessID:   uint32(p.pid),
		TimeoutInMs: protocol.InfiniteWait,
	}, &resp)
	p.exitCode = int(resp.ExitCode)
	close(p.exited)
	if p.exec && p.waitErr == nil {
		p.gc.publish(Event{Type: EventExecExit, ContainerID: p.cid, Pid: p.pid, ExitCode: p.exitCode})
	}
}

// Wait blocks until the process has exited; the error is the wait's own
// failure (a dead connection), not the exit code.
func (p *Process) Wait() error {
	<-p.exited
	return p.waitErr
}

// WaitChannel is closed when Wait would return.
func (p *Process) WaitChannel() <-chan struct{} { return p.exited }

// ExitCode is the exit code (128+signal for a signalled process). It fails
// if the process has not exited or its exit could not be learned.
func (p *Process) ExitCode() (int, error) {
	select {
	case <-p.exited:
		if p.waitErr != nil {
			return -1, p.waitErr
		}
		return p.exitCode, nil
	default:
		return -1, fmt.Errorf("process %d has not exited: %w", p.pid, protocol.HrVmcomputeInvalidState)
	}
}

// Close releases the stdio connections. It does not stop the process.
func (p *Process) Close() error {
	p.closeOnce.Do(func() {
		if p.stdin != nil {
			p.stdin.Close()
		}
		for _, r := range []*eofCloser{p.stdout, p.stderr} {
			if r != nil {
				r.close()
			}
		}
	})
	return nil
}

// eofCloser is an output stream that closes its connection once a read
// reaches EOF, and keeps answering EOF after that.
type eofCloser struct {
	c    net.Conn
	once sync.Once
	eof  bool // only Read touches it: one reader at a time
}

func (r *eofCloser) Read(b []byte) (int, error) {
	if r.eof {
		return 0, io.EOF
	}
	n, err := r.c.Read(b)
	if err == io.EOF {
		r.eof = true
		r.close()
	}
	return n, err
}

func (r *eofCloser) close() { r.once.Do(func() { r.c.Close() }) }

type halfCloser struct{ net.Conn }

func (h halfCloser) Close() error { return transport.CloseWrite(h.Conn) }
