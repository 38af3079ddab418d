package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/opencontainers/runc/libcontainer"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/uvmgcs/gcs/protocol"
)

// OnExit calls fn, once, with a process's exit code when it has exited and
// its output has drained: at once if it already has, else on the goroutine
// that saw it drain. Nothing waits meanwhile. An exec is forgotten after its
// first delivered exit code; the init is kept until the container is
// deleted. The returned cancel withdraws fn and reports whether it did so
// before fn was called.
func (m *Manager) OnExit(id string, pid int, fn func(code int)) (cancel func() bool, err error) {
	c, err := m.get(id)
	if err != nil {
		return nil, err
	}
	p, err := c.process(pid)
	if err != nil {
		return nil, err
	}
	return p.onDone(func() {
		c.mu.Lock()
		if c.procs[pid] == p {
			delete(c.procs, pid)
		}
		c.mu.Unlock()
		fn(p.code)
	}), nil
}

// Signal sends sig (0 means SIGKILL) to a process of container id.
func (m *Manager) Signal(ctx context.Context, id string, pid, sig int) error {
	c, err := m.get(id)
	if err != nil {
		return err
	}
	p, err := c.process(pid)
	if err != nil {
		return err
	}
	if sig == 0 {
		sig = int(unix.SIGKILL)
	}
	if sig < 1 || sig > 64 {
		return fmt.Errorf("signal %d: %w", sig, protocol.HrInvalidArg)
	}
	return p.signal(syscall.Signal(sig))
}

func (p *process) signal(sig syscall.Signal) error {
	select {
	case <-p.exit:
		return fmt.Errorf("process %d has exited: %w", p.pid, protocol.HrNotFound)
	default:
	}
	if err := p.p.Signal(sig); err != nil {
		if errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("process %d has exited: %w", p.pid, protocol.HrNotFound)
		}
		return fmt.Errorf("signal process %d: %w", p.pid, err)
	}
	return nil
}

// ResizeConsole resizes a container process's terminal.
func (m *Manager) ResizeConsole(ctx context.Context, id string, pid int, height, width uint16) error {
	c, err := m.get(id)
	if err != nil {
		return err
	}
	p, err := c.process(pid)
	if err != nil {
		return err
	}
	return p.relay.Resize(height, width)
}

// Shutdown asks the init to stop: SIGTERM, or SIGKILL when forced. The exit
// notification then says GracefulExit or ForcedExit.
func (m *Manager) Shutdown(ctx context.Context, id string, force bool) error {
	c, err := m.get(id)
	if err != nil {
		return err
	}
	c.mu.Lock()
	init, st := c.init, c.state
	if st == running {
		c.shutdown = protocol.NotificationGracefulExit
		if force {
			c.shutdown = protocol.NotificationForcedExit
		}
	}
	c.mu.Unlock()
	switch st {
	case created:
		return fmt.Errorf("container %q was never started: %w", id, protocol.HrVmcomputeInvalidState)
	case stopped:
		return fmt.Errorf("container %q: %w", id, protocol.HrVmcomputeSystemAlreadyStopped)
	}
	sig := syscall.SIGTERM
	if force {
		sig = syscall.SIGKILL
		// A frozen container cannot act on the signal.
		if s, err := c.lc.Status(); err == nil && s == libcontainer.Paused {
			_ = c.lc.Resume()
		}
	}
	if err := init.signal(sig); err != nil && !errors.Is(err, protocol.HrNotFound) {
		return err
	}
	return nil
}

// Pause freezes a running container.
func (m *Manager) Pause(ctx context.Context, id string) error {
	c, err := m.running(id)
	if err != nil {
		return err
	}
	if err := c.lc.Pause(); err != nil {
		return fmt.Errorf("pause %q: %w", id, err)
	}
	return nil
}

// Resume thaws a paused container.
func (m *Manager) Resume(ctx context.Context, id string) error {
	c, err := m.running(id)
	if err != nil {
		return err
	}
	if err := c.lc.Resume(); err != nil {
		if errors.Is(err, libcontainer.ErrNotPaused) {
			return fmt.Errorf("container %q is not paused: %w", id, protocol.HrVmcomputeInvalidState)
		}
		return fmt.Errorf("resume %q: %w", id, err)
	}
	return nil
}

func (m *Manager) running(id string) (*Container, error) {
	c, err := m.get(id)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != running {
		return nil, fmt.Errorf("container %q is not running: %w", id, protocol.HrVmcomputeInvalidState)
	}
	return c, nil
}

// Update applies new resource limits to a container's cgroups.
func (m *Manager) Update(ctx context.Context, id string, r *specs.LinuxResources) error {
	if r == nil {
		return fmt.Errorf("no resources given: %w", protocol.HrInvalidArg)
	}
	if err := checkResources(r); err != nil {
		return err
	}
	c, err := m.running(id)
	if err != nil {
		return err
	}
	cfg := c.lc.Config()
	res := cfg.Cgroups.Resources
	if mem := r.Memory; mem != nil {
		if mem.Limit != nil {
			res.Memory = *mem.Limit
		}
		if mem.Reservation != nil {
			res.MemoryReservation = *mem.Reservation
		}
		if mem.Swap != nil {
			res.MemorySwap = *mem.Swap
		}
	}
	if cpu := r.CPU; cpu != nil {
		if cpu.Shares != nil {
			res.CpuShares = *cpu.Shares
		}
		if cpu.Quota != nil {
			res.CpuQuota = *cpu.Quota
		}
		if cpu.Period != nil {
			res.CpuPeriod = *cpu.Period
		}
		if cpu.Cpus != "" {
			res.CpusetCpus = cpu.Cpus
		}
		if cpu.Mems != "" {
			res.CpusetMems = cpu.Mems
		}
	}
	if r.Pids != nil && r.Pids.Limit != nil {
		l := *r.Pids.Limit
		res.PidsLimit = &l
	}
	if err := c.lc.Set(cfg); err != nil {
		return fmt.Errorf("update %q: %w", id, err)
	}
	return nil
}
