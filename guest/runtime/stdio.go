package runtime

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/console"
	"golang.org/x/sys/unix"

	"github.com/uvmgcs/gcs/protocol"
	"github.com/uvmgcs/gcs/transport"
)

// A stream's relay buffer starts small (most processes say little and
// idle streams should cost little memory) and doubles up to the maximum
// each time a read fills it.
const (
	minCopyBuffer = 2 << 10
	maxCopyBuffer = 64 << 10
)

// Stdio is a process's stream connections to the host, one dialed per port
// the host named; a stream the host did not ask for is nil.
type Stdio struct {
	In, Out, Err net.Conn
}

// DialStdio dials the host's stdio ports. On failure nothing stays open.
func DialStdio(ctx context.Context, d transport.Dialer, s protocol.VsockStdioRelaySettings) (*Stdio, error) {
	var st Stdio
	for _, p := range []struct {
		port uint32
		conn *net.Conn
		name string
	}{{s.StdIn, &st.In, "stdin"}, {s.StdOut, &st.Out, "stdout"}, {s.StdErr, &st.Err, "stderr"}} {
		if p.port == 0 {
			continue
		}
		c, err := d.Dial(ctx, p.port)
		if err != nil {
			st.Close()
			return nil, fmt.Errorf("dial %s port %#x: %w", p.name, p.port, err)
		}
		*p.conn = c
	}
	return &st, nil
}

// PendingStdio is a DialStdio under way on a goroutine of its own.
type PendingStdio struct {
	done  chan struct{}
	stdio *Stdio
	err   error
}

// DialStdioAsync starts dialing the host's stdio ports while the caller
// goes on (starting the process: its output waits in its pipes).
func DialStdioAsync(ctx context.Context, d transport.Dialer, s protocol.VsockStdioRelaySettings) *PendingStdio {
	p := &PendingStdio{done: make(chan struct{})}
	if s.StdIn == 0 && s.StdOut == 0 && s.StdErr == 0 {
		p.stdio = &Stdio{}
		close(p.done)
		return p
	}
	go func() {
		defer close(p.done)
		p.stdio, p.err = DialStdio(ctx, d, s)
	}()
	return p
}

// Wait returns the dialed connections, or why they could not be.
func (p *PendingStdio) Wait() (*Stdio, error) {
	<-p.done
	return p.stdio, p.err
}

// Close closes every connection.
func (s *Stdio) Close() {
	for _, c := range []net.Conn{s.In, s.Out, s.Err} {
		if c != nil {
			c.Close()
		}
	}
}

// Relay copies between a process's stdio (pipes or a terminal) and its host
// connections. Create it before the process starts, hand Child() to the
// process, and call Start once it runs.
type Relay struct {
	stdio   *Stdio
	console console.Console // the terminal's master, if any
	child   [3]*os.File     // the process's ends, closed by Start
	stdin   *os.File        // our end of the stdin pipe
	outputs []io.ReadCloser // our ends of stdout/stderr (or the master)

	drained   chan struct{}
	closeOnce sync.Once

	mu      sync.Mutex
	streams []*outputStream // the outputs copied through outputWaiter
}

// NewPipeRelay makes one pipe per stream the host connected.
func NewPipeRelay(stdio *Stdio) (*Relay, error) {
	r, err := newPipeRelay(stdio.In != nil, stdio.Out != nil, stdio.Err != nil)
	if err != nil {
		return nil, err
	}
	r.stdio = stdio
	return r, nil
}

// NewPipeRelayFor makes one pipe per stream s names, before its connection
// exists, so that the process can start while the connections are dialed
// (DialStdioAsync); Attach them before Start.
func NewPipeRelayFor(s protocol.VsockStdioRelaySettings) (*Relay, error) {
	return newPipeRelay(s.StdIn != 0, s.StdOut != 0, s.StdErr != 0)
}

func newPipeRelay(in, out, err bool) (*Relay, error) {
	r := &Relay{stdio: &Stdio{}, drained: make(chan struct{})}
	if in {
		pr, pw, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		r.child[0], r.stdin = pr, pw
	}
	for i, want := range []bool{out, err} {
		if !want {
			continue
		}
		pr, pw, err := os.Pipe()
		if err != nil {
			r.Close()
			return nil, err
		}
		r.child[i+1] = pw
		r.outputs = append(r.outputs, pr)
	}
	return r, nil
}

// Attach gives a relay made by NewPipeRelayFor the connections dialed for
// the same settings. It comes before Start.
func (r *Relay) Attach(stdio *Stdio) { r.stdio = stdio }

// NewPtyRelay makes a terminal of the given size (0 keeps the default) whose
// slave is the process's stdin, stdout and stderr. Its output goes to the
// stdout connection; a stderr connection is closed at once.
func NewPtyRelay(stdio *Stdio, height, width uint16) (*Relay, error) {
	master, slavePath, err := console.NewPty()
	if err != nil {
		return nil, fmt.Errorf("allocate terminal: %w", err)
	}
	slave, err := os.OpenFile(slavePath, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		return nil, fmt.Errorf("open terminal %s: %w", slavePath, err)
	}
	r := NewConsoleRelay(stdio, master)
	r.child = [3]*os.File{slave, slave, slave}
	if height != 0 && width != 0 {
		if err := r.Resize(height, width); err != nil {
			r.Close()
			return nil, err
		}
	}
	return r, nil
}

// NewConsoleRelay relays a terminal whose master the caller already holds
// (a container's console, received over its console socket).
func NewConsoleRelay(stdio *Stdio, master console.Console) *Relay {
	r := &Relay{stdio: stdio, console: master, drained: make(chan struct{})}
	if stdio.Out != nil {
		r.outputs = []io.ReadCloser{master}
	}
	return r
}

// Child returns the process's stdin, stdout and stderr; nil entries mean
// no such stream (the process gets /dev/null).
func (r *Relay) Child() [3]*os.File { return r.child }

// Terminal reports whether the relay is a terminal's.
func (r *Relay) Terminal() bool { return r.console != nil }

// Start closes the process's ends, which it now holds, and starts copying.
func (r *Relay) Start() {
	r.closeChild()
	if r.console != nil && r.stdio.Err != nil {
		r.stdio.Err.Close()
	}
	if r.stdio.In != nil {
		var dst io.Writer = r.stdin
		if r.console != nil {
			dst = r.console
		}
		go func() {
			copyStream(dst, r.stdio.In)
			// End of the host's stdin: the process sees EOF. A terminal
			// stays open; its process ends by its own means.
			if r.stdin != nil {
				r.stdin.Close()
			}
		}()
	}
	conns := []net.Conn{r.stdio.Out, r.stdio.Err}
	if r.console != nil {
		conns = conns[:1]
	}
	type stream struct {
		dst net.Conn
		src io.Reader
	}
	var streams []stream
	i := 0
	for _, c := range conns {
		if c != nil {
			streams = append(streams, stream{c, r.outputs[i]})
			i++
		}
	}
	// The last copy to finish announces the drain: no goroutine waits.
	var left atomic.Int32
	left.Store(int32(len(streams)))
	if len(streams) == 0 {
		close(r.drained)
	}
	for _, s := range streams {
		end := func() {
			transport.CloseWrite(s.dst) // EOF for the host
			if left.Add(-1) == 0 {
				close(r.drained)
			}
		}
		// A pipe waits for output with the process's other idle pipes,
		// on no goroutine of its own; a terminal's master on one.
		if f, ok := s.src.(*os.File); ok {
			if w, err := outputWaiter(); err == nil {
				if o, ok := startOutput(w, s.dst, f, end); ok {
					r.mu.Lock()
					r.streams = append(r.streams, o)
					r.mu.Unlock()
					continue
				}
			}
		}
		go func() {
			copyStream(s.dst, s.src)
			end()
		}()
	}
}

// Drained is closed once every output stream reached its end: the process
// and everything it shared its stdio with closed them.
func (r *Relay) Drained() <-chan struct{} { return r.drained }

// WaitDrained waits for the output to drain, at most grace: descendants that
// outlive the process may hold its stdio open forever. After grace the
// output is cut off. It reports whether the output drained in time.
func (r *Relay) WaitDrained(grace time.Duration) bool {
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-r.drained:
		return true
	case <-t.C:
	}
	r.closeOutputs()
	<-r.drained
	return false
}

// closeOutputs cuts the output streams off.
func (r *Relay) closeOutputs() {
	r.mu.Lock()
	streams := r.streams
	r.mu.Unlock()
	for _, s := range streams {
		s.stop()
	}
	for _, o := range r.outputs {
		o.Close()
	}
}

// Resize sets the terminal's size.
func (r *Relay) Resize(height, width uint16) error {
	if r.console == nil {
		return fmt.Errorf("process has no terminal: %w", protocol.HrInvalidArg)
	}
	return r.console.Resize(console.WinSize{Height: height, Width: width})
}

// Close releases everything the relay holds.
func (r *Relay) Close() {
	r.closeOnce.Do(func() {
		r.closeChild()
		if r.stdin != nil {
			r.stdin.Close()
		}
		r.closeOutputs()
		if r.console != nil {
			r.console.Close()
		}
		r.stdio.Close()
	})
}

func (r *Relay) closeChild() {
	seen := map[*os.File]bool{}
	for i, f := range r.child {
		if f != nil && !seen[f] {
			seen[f] = true
			f.Close()
		}
		r.child[i] = nil
	}
}

// copyStream copies until either side ends. Errors end the stream: a
// process that closed its stdin, a host that went away, a terminal whose
// last slave closed (EIO) all mean there is nothing more to move.
//
// A source the poller can wait on (a pipe) holds no buffer while it is
// idle: the copy waits for it to turn readable, then borrows a buffer from
// a pool for the read and the write. Most streams of long-running
// processes are idle most of the time, so 100 containers do not hold 200
// buffers.
func copyStream(dst io.Writer, src io.Reader) {
	var rc syscall.RawConn
	if sc, ok := src.(syscall.Conn); ok {
		rc, _ = sc.SyscallConn()
	}
	class := 0
	for {
		if rc != nil {
			if err := waitReadable(rc); err != nil {
				return
			}
		}
		buf := copyBuffers[class].Get().(*[]byte)
		n, err := src.Read(*buf)
		var werr error
		if n > 0 {
			_, werr = dst.Write((*buf)[:n])
		}
		full := n == len(*buf)
		copyBuffers[class].Put(buf)
		if werr != nil || err != nil {
			return
		}
		if full && class < len(copyBuffers)-1 {
			class++
		}
	}
}

// copyBuffers are pools of relay buffers, minCopyBuffer doubling up to
// maxCopyBuffer: a stream moves up a size each time a read fills its
// buffer.
var copyBuffers = func() []sync.Pool {
	var pools []sync.Pool
	for size := minCopyBuffer; size <= maxCopyBuffer; size *= 2 {
		pools = append(pools, sync.Pool{New: func() any { b := make([]byte, size); return &b }})
	}
	return pools
}()

// waitReadable returns once fd has something to read, has hung up or
// failed: a read then will not block.
func waitReadable(rc syscall.RawConn) error {
	return rc.Read(func(fd uintptr) bool {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(pfd, 0)
		return err != nil && err != unix.EINTR || n > 0
	})
}
