package main

import (
	"context"
	"fmt"
	"os"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/uvmgcs/gcs/host"
	"github.com/uvmgcs/gcs/protocol"
)

// stopTimeout bounds the wait for a killed init to be reported stopped.
const stopTimeout = 20 * time.Second

// createMain creates a container from a bundle without starting it.
func createMain(args []string) (int, error) {
	f := newCmdFlags("create")
	bundle := bundleFlag(f)
	pos, err := f.parse(args, 1, 1)
	if err != nil {
		return 2, err
	}
	spec, err := loadSpec(*bundle)
	if err != nil {
		return 1, err
	}
	s, err := f.connect()
	if err != nil {
		return 1, err
	}
	defer s.close()
	_, err = s.create(pos[0], spec)
	return 0, err
}

// startMain starts a created container's init: detached, or attached to
// this process's stdio until it exits.
func startMain(args []string) (int, error) {
	f := newCmdFlags("start")
	detach := f.fs.Bool("d", false, "detach: start the init and return at once")
	tty := f.fs.Bool("t", false, "the container's process.terminal is set: put the local terminal in raw mode and pass its size")
	pos, err := f.parse(args, 1, 1)
	if err != nil {
		return 2, err
	}
	s, c, st, err := f.connectTo(pos[0])
	if err != nil {
		return 1, err
	}
	defer s.close()
	if st.Status != protocol.StatusCreated {
		return 1, fmt.Errorf("start %q: container is %s, not created", c.ID(), st.Status)
	}
	if *detach {
		return 0, s.startDetached(c)
	}
	return s.startAttached(c, *tty)
}

// runMain creates and starts a container. Attached, it deletes the
// container once the init has exited (unless --keep) and exits with the
// init's exit code.
func runMain(args []string) (int, error) {
	f := newCmdFlags("run")
	bundle := bundleFlag(f)
	detach := f.fs.Bool("d", false, "detach: start the init and return at once")
	keep := f.fs.Bool("keep", false, "attached: keep the stopped container instead of deleting it")
	pos, err := f.parse(args, 1, 1)
	if err != nil {
		return 2, err
	}
	spec, err := loadSpec(*bundle)
	if err != nil {
		return 1, err
	}
	s, err := f.connect()
	if err != nil {
		return 1, err
	}
	defer s.close()
	c, err := s.create(pos[0], spec)
	if err != nil {
		return 1, err
	}
	if *detach {
		if err := s.startDetached(c); err != nil {
			s.discard(c)
			return 1, err
		}
		return 0, nil
	}
	code, err := s.startAttached(c, spec.Process.Terminal)
	if err != nil {
		s.discard(c)
		return code, err
	}
	if !*keep {
		s.discard(c)
	}
	return code, nil
}

// deleteMain removes a stopped container; with -f a running one is killed
// first.
func deleteMain(args []string) (int, error) {
	f := newCmdFlags("delete")
	force := f.fs.Bool("f", false, "kill a running container first; a missing container is no error")
	f.fs.BoolVar(force, "force", false, "same as -f")
	pos, err := f.parse(args, 1, 1)
	if err != nil {
		return 2, err
	}
	s, err := f.connect()
	if err != nil {
		return 1, err
	}
	defer s.close()
	c, st, err := s.open(pos[0])
	if err != nil {
		if *force && host.IsNotFound(err) {
			return 0, nil
		}
		return 1, err
	}
	if st.Status == protocol.StatusRunning || st.Status == protocol.StatusPaused {
		if !*force {
			return 1, fmt.Errorf("delete %q: container is %s; stop it first or use -f", c.ID(), st.Status)
		}
		if err := c.Terminate(s.ctx); err != nil {
			return 1, fmt.Errorf("delete %q: kill: %w", c.ID(), err)
		}
		if err := s.waitStopped(c, stopTimeout); err != nil {
			return 1, fmt.Errorf("delete %q: %w", c.ID(), err)
		}
	}
	if err := c.Delete(s.ctx); err != nil {
		return 1, fmt.Errorf("delete %q: %w", c.ID(), err)
	}
	return 0, nil
}

// bundleFlag adds --bundle (and its short form -b) to f.
func bundleFlag(f *cmdFlags) *string {
	b := f.fs.String("bundle", ".", "bundle directory holding config.json")
	f.fs.StringVar(b, "b", ".", "same as --bundle")
	return b
}

// create creates container id from spec.
func (s *session) create(id string, spec *specs.Spec) (*host.Container, error) {
	c, err := s.gc.CreateContainer(s.ctx, id, spec)
	if err != nil {
		if host.IsAlreadyExists(err) {
			return nil, fmt.Errorf("create %q: container already exists: %w", id, err)
		}
		return nil, fmt.Errorf("create %q: %w", id, err)
	}
	return c, nil
}

// startDetached starts c's init with no stdio streams.
func (s *session) startDetached(c *host.Container) error {
	p, err := c.CreateProcess(s.ctx, &protocol.ProcessParameters{})
	if err != nil {
		return fmt.Errorf("start %q: %w", c.ID(), err)
	}
	return p.Close()
}

// startAttached starts c's init with stdin, stdout and stderr (a terminal
// when tty) relayed to this process's, and returns its exit code.
func (s *session) startAttached(c *host.Container, tty bool) (int, error) {
	params := stdioParams(tty, true)
	if tty {
		defer localConsole(params)()
	}
	p, err := c.CreateProcess(s.ctx, params)
	if err != nil {
		return 1, fmt.Errorf("start %q: %w", c.ID(), err)
	}
	code, err := attach(s.ctx, p, tty)
	if err != nil {
		return 1, fmt.Errorf("%q: %w", c.ID(), err)
	}
	return code, nil
}

// discard kills c if it runs and deletes it, even after an interrupt; a
// failure is only reported: the verb has already failed or finished.
func (s *session) discard(c *host.Container) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), stopTimeout)
	defer cancel()
	cleanup := &session{ctx: ctx, gc: s.gc}
	err := c.Terminate(ctx)
	if err == nil {
		err = cleanup.waitStopped(c, stopTimeout)
	} else if host.IsInvalidState(err) {
		err = nil // never started
	}
	if err == nil {
		err = c.Delete(ctx)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "host-bridge: warning: delete %q: %v\n", c.ID(), err)
	}
}
