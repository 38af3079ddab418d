package host

import (
	"context"
	"errors"
	"fmt"

	"github.com/containerd/errdefs"

	"github.com/uvmgcs/gcs/protocol"
)

// OpenContainer returns the connection's handle on container id, which
// exists in the guest (created through this connection or an earlier one,
// e.g. before the host process restarted). Opening it again returns the
// same handle. A container that is not there is errdefs.ErrNotFound. A
// running init is waited for (its exit code is then known here); a
// container that stopped while nobody listened reports its exit at once.
// A guest without the uvmgcs state extension gives a handle unchecked.
func (gc *GuestConnection) OpenContainer(ctx context.Context, id string) (*Container, error) {
	notes := gc.Notifications(id) // before the state: no exit slips between
	if notes == nil {
		return nil, errors.New("too many containers on this connection")
	}
	c, made := gc.handle(id, notes)
	if !made {
		return c, nil
	}
	st, err := c.State(ctx)
	switch {
	case errdefs.IsNotImplemented(err): // not our guest: no state to check
		return c, nil
	case err != nil:
		c.forget()
		if IsNotFound(err) {
			gc.ForgetNotifications(id)
			return nil, fmt.Errorf("container %q: %w", id, err)
		}
		return nil, err
	}
	switch {
	case st.Status == protocol.StatusStopped:
		c.stateExit = st.ExitCode
		close(c.stopped)
	case st.Pid != 0:
		c.mu.Lock()
		if c.init == nil {
			c.init = c.waitFor(st.Pid, false)
		}
		c.mu.Unlock()
	}
	return c, nil
}

// InitPid is the container's init's pid in the guest; a container whose
// init has not started is errdefs.ErrFailedPrecondition.
func (c *Container) InitPid(ctx context.Context) (int, error) {
	if pid, ok := c.knownInitPid(); ok {
		return pid, nil
	}
	st, err := c.State(ctx)
	if err != nil {
		return 0, err
	}
	if st.Pid == 0 {
		return 0, fmt.Errorf("container %q is %s and has no init: %w", c.id, st.Status, errdefs.ErrFailedPrecondition)
	}
	return st.Pid, nil
}

func (c *Container) knownInitPid() (int, bool) {
	if init := c.initProcess(); init != nil {
		return init.Pid(), true
	}
	return 0, false
}

// Signal sends sig (a Linux signal number: see Signal and ParseSignal) to
// the container's init. An init that has exited is errdefs.ErrNotFound.
func (c *Container) Signal(ctx context.Context, sig int) error {
	select {
	case <-c.exited:
		return fmt.Errorf("container %q has exited: %w", c.id, errdefs.ErrNotFound)
	default:
	}
	pid, err := c.InitPid(ctx)
	if err != nil {
		return err
	}
	err = c.gc.RPC(ctx, protocol.SignalProcess, &protocol.SignalProcessRequest{
		RequestBase: protocol.RequestBase{ContainerID: c.id},
		ProcessID:   uint32(pid),
		Options:     &protocol.SignalProcessOptions{Signal: int32(sig)},
	}, nil)
	if err != nil {
		return fmt.Errorf("signal %d to container %q: %w", sig, c.id, err)
	}
	return nil
}

// Kill kills the container's init (SIGKILL) and waits until its exit has
// been reported or ctx ends. A container that has stopped already, or
// whose init never started, is not an error.
func (c *Container) Kill(ctx context.Context) error {
	if err := c.Terminate(ctx); err != nil {
		if IsInvalidState(err) { // created, never started
			return nil
		}
		return fmt.Errorf("kill container %q: %w", c.id, err)
	}
	select {
	case <-c.exited:
		return c.err
	case <-ctx.Done():
		return fmt.Errorf("kill container %q: wait for its exit: %w", c.id, ctx.Err())
	}
}

// OpenProcess returns a handle on process pid of the container, started
// earlier (e.g. by a host process before it restarted): it can be waited
// for and signalled; it has no stdio.
func (c *Container) OpenProcess(pid int) *Process {
	if init := c.initProcess(); init != nil && init.Pid() == pid {
		return init
	}
	return c.waitFor(pid, true)
}

// waitFor is a stdio-less handle on process pid that asks for its exit;
// exec says it is not the init.
func (c *Container) waitFor(pid int, exec bool) *Process {
	p := &Process{gc: c.gc, cid: c.id, pid: pid, exited: make(chan struct{}), exec: exec}
	go p.waitBackground()
	return p
}
