package shim

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// outputDrainTimeout bounds the wait for a process's output to reach
// containerd after it exited.
const outputDrainTimeout = 10 * time.Second

// process is a task's init (execID "") or one of its execs.
type process struct {
	taskID string
	execID string
	stdio  stdioPaths
	spec   *specs.Process // an exec's process; nil for the init
	// settle, when set, runs after the process exited and its output
	// drained, before the exit is recorded.
	settle func()

	mu       sync.Mutex
	gp       guestProcess // nil until started
	relay    *relay
	started  bool
	status   task.Status
	exitCode uint32
	exitedAt time.Time
	exited   chan struct{} // closed once exitCode and exitedAt are set
}

func newProcess(taskID, execID string, stdio stdioPaths, spec *specs.Process) *process {
	return &process{taskID: taskID, execID: execID, stdio: stdio, spec: spec, status: task.Status_CREATED, exited: make(chan struct{})}
}

// setExited records the exit once; later calls do nothing. It reports
// whether this call recorded it.
func (p *process) setExited(code uint32) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.status == task.Status_STOPPED {
		return false
	}
	p.status, p.exitCode, p.exitedAt = task.Status_STOPPED, code, time.Now()
	close(p.exited)
	return true
}

func (p *process) isExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// guest returns the running process, or why there is none.
func (p *process) guest() (guestProcess, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.status == task.Status_STOPPED:
		return nil, fmt.Errorf("process %s/%s has exited: %w", p.taskID, p.execID, errdefs.ErrNotFound)
	case p.gp == nil:
		return nil, fmt.Errorf("process %s/%s is not started: %w", p.taskID, p.execID, errdefs.ErrFailedPrecondition)
	}
	return p.gp, nil
}

// start runs the process through launch and relays its stdio. The exit is
// recorded (and reported through onExit) after the output drained.
func (p *process) start(ctx context.Context, ns string, launch func(stdioRequest) (guestProcess, error), onExit func(*process)) error {
	p.mu.Lock()
	if p.started {
		p.mu.Unlock()
		return fmt.Errorf("process %s/%s already started: %w", p.taskID, p.execID, errdefs.ErrFailedPrecondition)
	}
	if p.status == task.Status_STOPPED {
		p.mu.Unlock()
		return fmt.Errorf("process %s/%s has exited: %w", p.taskID, p.execID, errdefs.ErrFailedPrecondition)
	}
	p.started = true
	p.mu.Unlock()
	gp, err := launch(p.stdio.request())
	if err != nil {
		p.mu.Lock()
		p.started = false
		p.mu.Unlock()
		return err
	}
	r, err := startRelay(ctx, p.stdio, gp, p.taskID, ns)
	if err != nil {
		_ = gp.Signal(context.WithoutCancel(ctx), 9)
		gp.Close()
		p.setExited(255)
		return err
	}
	p.mu.Lock()
	p.gp, p.relay, p.status = gp, r, task.Status_RUNNING
	p.mu.Unlock()
	go func() {
		<-gp.WaitChannel()
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), outputDrainTimeout)
		r.wait(dctx)
		cancel()
		code, err := gp.ExitCode()
		if err != nil {
			// The agent is gone, and the VM with it: everything in it
			// was killed.
			code = 137
		}
		r.close()
		gp.Close()
		if p.settle != nil {
			p.settle()
		}
		if p.setExited(uint32(code)) {
			onExit(p)
		}
	}()
	return nil
}

// state is the process's State answer.
func (p *process) state(paused bool) (task.Status, uint32, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.status
	if st == task.Status_RUNNING && paused {
		st = task.Status_PAUSED
	}
	return st, p.exitCode, p.exitedAt
}
