package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/uvmgcs/gcs/host"
	"github.com/uvmgcs/gcs/host/layer"
	"github.com/uvmgcs/gcs/host/uvm"
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
		kctx, cancel := context.WithTimeout(s.ctx, stopTimeout)
		err := c.Kill(kctx)
		cancel()
		if err != nil {
			return 1, fmt.Errorf("delete %q: %w", c.ID(), err)
		}
	}
	if err := s.remove(s.ctx, c); err != nil {
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

// create creates container id from spec. In a named VM the spec's
// root.path is a directory or a tar on this host: it becomes a layer disk
// (cached by content, shared by every container of that image) under a
// scratch disk of the container's own, which the VM's owner attaches and
// releases on delete. Otherwise the root must be where the agent sees it.
func (s *session) create(id string, spec *specs.Spec) (*host.Container, error) {
	if s.u == nil {
		c, err := s.gc.CreateContainer(s.ctx, id, spec)
		if err != nil {
			return nil, createError(id, err)
		}
		return c, nil
	}
	if err := validID(id); err != nil {
		return nil, err
	}
	data := dataDir()
	l, err := layer.Cache{Dir: filepath.Join(data, "layers")}.Layer(s.ctx, spec.Root.Path)
	if err != nil {
		return nil, fmt.Errorf("create %q: pack %s: %w", id, spec.Root.Path, err)
	}
	scratch := filepath.Join(data, "scratch", s.name+"-"+id+".img")
	if err := os.MkdirAll(filepath.Dir(scratch), 0o700); err != nil {
		return nil, err
	}
	os.Remove(scratch) // one left by a create that died
	if err := layer.Scratch(s.ctx, scratch, scratchMiB); err != nil {
		return nil, fmt.Errorf("create %q: %w", id, err)
	}
	c, err := s.u.CreateContainer(s.ctx, id, spec, uvm.ContainerConfig{
		RootFS: uvm.RootFS{Layers: []string{l}, Scratch: scratch, RemoveScratch: true},
	})
	if err != nil {
		os.Remove(scratch)
		return nil, createError(id, err)
	}
	return c.Container, nil
}

// scratchMiB is the size of a container's scratch disk (sparse).
const scratchMiB = 1024

// dataDir holds layer disks by content and containers' scratch disks:
// $UVMGCS_DATA, else /var/lib/uvmgcs.
func dataDir() string {
	if d := os.Getenv("UVMGCS_DATA"); d != "" {
		return d
	}
	return "/var/lib/uvmgcs"
}

// validID says whether id can name a container (and its files here).
func validID(id string) error {
	if id == "" || len(id) > 128 || strings.ContainsAny(id, "/\\\x00") || id == "." || id == ".." {
		return usageError{fmt.Errorf("container id %q: 1-128 characters, no slashes", id)}
	}
	return nil
}

func createError(id string, err error) error {
	if errdefs.IsAlreadyExists(err) {
		return fmt.Errorf("create %q: container already exists: %w", id, err)
	}
	return fmt.Errorf("create %q: %w", id, err)
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
	err := c.Kill(ctx)
	if err == nil {
		err = s.remove(ctx, c)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "host-bridge: warning: delete %q: %v\n", c.ID(), err)
	}
}
