package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/containerd/errdefs"

	"github.com/uvmgcs/gcs/host"
	"github.com/uvmgcs/gcs/host/uvm"
	"github.com/uvmgcs/gcs/protocol"
)

// defaultConnectTimeout is how long a verb waits for the agent to dial in.
const defaultConnectTimeout = 30 * time.Second

// cmdFlags are a container verb's flag set with the connection flags every
// verb shares.
type cmdFlags struct {
	fs      *flag.FlagSet
	verb    string
	dir     string
	uvm     string // a long-lived VM's name, instead of dir
	timeout time.Duration
}

// newCmdFlags returns verb's flag set holding --socket-dir and
// --connect-timeout; the verb adds its own flags to fs.
func newCmdFlags(verb string) *cmdFlags {
	f := &cmdFlags{fs: flag.NewFlagSet(verb, flag.ContinueOnError), verb: verb}
	f.fs.StringVar(&f.dir, "socket-dir", "", "directory of the unix transport's sockets (or --uvm)")
	f.fs.Func("uvm", "the long-lived utility VM NAME (host-bridge uvm start) to act on", func(name string) error {
		if !validUVMName(name) {
			return fmt.Errorf("uvm name %q is not valid", name)
		}
		f.uvm = name
		return nil
	})
	f.fs.DurationVar(&f.timeout, "connect-timeout", defaultConnectTimeout, "how long to wait for the agent to connect")
	f.fs.Usage = func() {
		fmt.Fprintln(f.fs.Output(), verbUsage(verb))
		f.fs.PrintDefaults()
	}
	return f
}

// usageError is a command-line mistake; main exits 2 on it.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// parse parses args, flags and positional arguments in any order (a "--"
// ends the flags), and checks that between minArgs and maxArgs positional
// arguments remain (maxArgs < 0: no bound).
func (f *cmdFlags) parse(args []string, minArgs, maxArgs int) ([]string, error) {
	pos, err := parseInterspersed(f.fs, args)
	if err != nil {
		return nil, usageError{err}
	}
	if f.dir == "" && f.uvm == "" {
		return nil, usageError{fmt.Errorf("%s: --socket-dir or --uvm is required", f.verb)}
	}
	if len(pos) < minArgs || (maxArgs >= 0 && len(pos) > maxArgs) {
		return nil, usageError{fmt.Errorf("%s: wrong number of arguments (%d)\n%s", f.verb, len(pos), verbUsage(f.verb))}
	}
	return pos, nil
}

// parseInterspersed is fs.Parse that also accepts flags after positional
// arguments; it returns the positional arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// session is a verb's connection to the running agent: and, with --uvm
// on Linux, the VM's owner, which adds and releases container disks.
type session struct {
	ctx  context.Context
	gc   *host.GuestConnection
	u    *uvm.UVM // nil without --uvm (and on Windows)
	name string   // the --uvm VM's name
	done func()
}

// connect reaches the agent on the socket directory, or the --uvm VM.
// The session's context ends on SIGINT or SIGTERM; close releases
// everything.
func (f *cmdFlags) connect() (*session, error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	cctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	r, err := reach(cctx, f.dir, f.uvm, "")
	if err != nil {
		stop()
		return nil, fmt.Errorf("%s: %w", f.verb, err)
	}
	return &session{ctx: ctx, gc: r.gc, u: r.u, name: f.uvm, done: func() { r.close(); stop() }}, nil
}

// close closes the connection.
func (s *session) close() { s.done() }

// connectTo connects and opens existing container id; the session is
// closed again when the container cannot be opened.
func (f *cmdFlags) connectTo(id string) (*session, *host.Container, *protocol.ContainerState, error) {
	s, err := f.connect()
	if err != nil {
		return nil, nil, nil, err
	}
	c, st, err := s.open(id)
	if err != nil {
		s.close()
		return nil, nil, nil, err
	}
	return s, c, st, nil
}

// open returns a handle on existing container id and its state, with a
// plain message when there is no such container.
func (s *session) open(id string) (*host.Container, *protocol.ContainerState, error) {
	c, err := s.gc.OpenContainer(s.ctx, id)
	if err == nil {
		var st *protocol.ContainerState
		if st, err = c.State(s.ctx); err == nil {
			return c, st, nil
		}
	}
	if errdefs.IsNotFound(err) {
		return nil, nil, fmt.Errorf("container %q does not exist: %w", id, err)
	}
	return nil, nil, fmt.Errorf("container %q: %w", id, err)
}

// remove deletes stopped container c in the guest and releases what the
// VM's owner added for it.
func (s *session) remove(ctx context.Context, c *host.Container) error {
	if s.u == nil {
		return c.Delete(ctx)
	}
	uc, err := s.u.OpenContainer(ctx, c.ID())
	if err != nil {
		return err
	}
	return uc.Delete(ctx)
}

// exitCode turns a verb's result into the process exit status: usage
// errors are 2, other failures at least 1.
func exitCode(code int, err error) int {
	var ue usageError
	switch {
	case err == nil:
		return code
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		return 2
	case code == 0:
		return 1
	}
	return code
}
