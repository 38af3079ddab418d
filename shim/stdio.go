package shim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/fifo"
	"github.com/containerd/log"
)

// stdioPaths are the streams containerd named for a process: FIFO paths,
// file:// or binary:// URIs, or empty.
type stdioPaths struct {
	Stdin, Stdout, Stderr string
	Terminal              bool
}

func (s stdioPaths) request() stdioRequest {
	return stdioRequest{Stdin: s.Stdin != "", Stdout: s.Stdout != "", Stderr: s.Stderr != "", Terminal: s.Terminal}
}

// validate refuses what the shim cannot open, before anything is created.
func (s stdioPaths) validate() error {
	for _, p := range []string{s.Stdout, s.Stderr} {
		u, err := url.Parse(p)
		if err != nil || p == "" {
			continue
		}
		switch u.Scheme {
		case "", "fifo", "file", "binary":
		default:
			return fmt.Errorf("stdio %s: unknown scheme %q: %w", p, u.Scheme, errdefs.ErrInvalidArgument)
		}
	}
	if u, err := url.Parse(s.Stdin); err == nil && u.Scheme != "" && u.Scheme != "fifo" {
		return fmt.Errorf("stdin %s: only a FIFO can be stdin: %w", s.Stdin, errdefs.ErrInvalidArgument)
	}
	return nil
}

// relay copies a process's streams between containerd's FIFOs or files
// and the guest. Output is done when both output copies have ended (the
// guest closed the streams after the process exited).
type relay struct {
	ctx       context.Context
	logger    *binaryLogger
	closers   []io.Closer
	stdin     io.ReadCloser
	stdinDone chan struct{} // closed when the stdin copy ended
	outputs   sync.WaitGroup
	once      sync.Once
}

// stdinCloseGrace is how long CloseIO lets the stdin copy drain what the
// FIFO holds before cutting it: a client closes its end right after.
const stdinCloseGrace = 2 * time.Second

// openOutput opens an output path: a FIFO (also opened for reading, so that
// a containerd restart between its reads does not break the pipe) or a
// file:// URI.
func openOutput(ctx context.Context, p string) (io.WriteCloser, []io.Closer, error) {
	u, err := url.Parse(p)
	if err == nil && u.Scheme == "file" {
		if err := os.MkdirAll(filepath.Dir(u.Path), 0o755); err != nil {
			return nil, nil, err
		}
		f, err := os.OpenFile(u.Path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return nil, nil, err
		}
		return f, []io.Closer{f}, nil
	}
	if err == nil && u.Scheme == "fifo" {
		p = u.Path
	}
	w, err := fifo.OpenFifo(ctx, p, syscall.O_WRONLY, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", p, err)
	}
	r, err := fifo.OpenFifo(ctx, p, syscall.O_RDONLY, 0)
	if err != nil {
		w.Close()
		return nil, nil, fmt.Errorf("open %s: %w", p, err)
	}
	return w, []io.Closer{w, r}, nil
}

// startRelay connects p's streams to the paths. The FIFOs are opened
// here; containerd holds their other ends already.
func startRelay(ctx context.Context, paths stdioPaths, p guestProcess, taskID, ns string) (*relay, error) {
	r := &relay{ctx: ctx}
	fail := func(err error) (*relay, error) {
		r.close()
		return nil, err
	}
	if paths.Stdin != "" && p.Stdin() != nil {
		in, err := fifo.OpenFifo(context.WithoutCancel(ctx), paths.Stdin, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return fail(fmt.Errorf("open stdin %s: %w", paths.Stdin, err))
		}
		r.stdin, r.stdinDone = in, make(chan struct{})
		r.closers = append(r.closers, in)
		go func() {
			defer close(r.stdinDone)
			_, _ = io.Copy(p.Stdin(), in)
			_ = p.CloseStdin()
		}()
	}
	outs := []struct {
		path string
		src  io.Reader
	}{{paths.Stdout, p.Stdout()}, {paths.Stderr, p.Stderr()}}
	if paths.Terminal {
		outs = outs[:1]
	}
	if u, err := url.Parse(paths.Stdout); err == nil && u.Scheme == "binary" {
		l, err := startBinaryLogger(ctx, u, taskID, ns)
		if err != nil {
			return fail(err)
		}
		r.logger = l
	}
	for i, o := range outs {
		if o.src == nil {
			continue
		}
		var w io.Writer = io.Discard
		if r.logger != nil {
			w = r.logger.out
			if i == 1 {
				w = r.logger.err
			}
		} else if o.path != "" {
			wc, closers, err := openOutput(context.WithoutCancel(ctx), o.path)
			if err != nil {
				return fail(err)
			}
			r.closers = append(r.closers, closers...)
			w = wc
		}
		r.outputs.Add(1)
		go func(src io.Reader) {
			defer r.outputs.Done()
			if _, err := io.Copy(w, src); err != nil && !errors.Is(err, os.ErrClosed) {
				log.G(ctx).WithError(err).Debug("stdio copy ended")
			}
		}(o.src)
	}
	return r, nil
}

// closeStdin ends the process's stdin (CloseIO) once what the FIFO holds
// has been copied: at its writer's EOF, or after a grace period.
func (r *relay) closeStdin() {
	if r == nil || r.stdin == nil {
		return
	}
	go func() {
		select {
		case <-r.stdinDone:
		case <-time.After(stdinCloseGrace):
			r.stdin.Close()
		}
	}()
}

// wait blocks until the output copies ended or ctx ends.
func (r *relay) wait(ctx context.Context) {
	if r == nil {
		return
	}
	done := make(chan struct{})
	go func() { r.outputs.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// close closes every FIFO and file the relay opened.
func (r *relay) close() {
	if r == nil {
		return
	}
	r.once.Do(func() {
		for _, c := range r.closers {
			c.Close()
		}
		if r.logger != nil {
			r.logger.stop(r.ctx)
		}
	})
}
