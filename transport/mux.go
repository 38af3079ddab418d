package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
)

// The multiplexed transport carries every port over one byte stream (a
// virtio-serial port when the VM has no vsock): a yamux session on which
// the guest opens one stream per Dial, and the stream's first four bytes
// (little-endian) name the port. hashicorp/yamux provides the flow control
// and half-close a hand-written multiplexer would have to reinvent.

// portHeaderTimeout bounds how long the host waits for a new stream to name
// its port.
const portHeaderTimeout = 10 * time.Second

func muxConfig() *yamux.Config {
	c := yamux.DefaultConfig()
	c.LogOutput = io.Discard
	// The serial link has no other liveness signal; keep-alives find a dead
	// peer, and the connection-level timeout bounds a stuck write.
	c.KeepAliveInterval = 10 * time.Second
	c.ConnectionWriteTimeout = 30 * time.Second
	// A stream may have 1 MiB in flight, not yamux's 256 KiB: a 9p read
	// reply (up to the guest's 512 KiB msize) then crosses the slow serial
	// link without waiting for window updates (64 MiB into a TCG guest
	// through a share: 43 -> 64 MB/s, BenchmarkVMShareRead). The memory is
	// taken only as data arrives that the reader has not consumed.
	c.MaxStreamWindowSize = 1 << 20
	return c
}

// MuxDialer is the guest's end: Dial opens a stream on the session over the
// byte stream Open returns, opening a new session when the last one died
// (the host went away and came back).
type MuxDialer struct {
	Open func() (io.ReadWriteCloser, error)

	mu   sync.Mutex
	sess *yamux.Session
}

// Dial opens a stream to port.
func (d *MuxDialer) Dial(ctx context.Context, port uint32) (net.Conn, error) {
	sess, err := d.session()
	if err != nil {
		return nil, err
	}
	s, err := sess.OpenStream()
	if err != nil {
		sess.Close()
		return nil, fmt.Errorf("mux dial %#x: %w", port, err)
	}
	var hdr [4]byte
	binary.LittleEndian.PutUint32(hdr[:], port)
	if _, err := s.Write(hdr[:]); err != nil {
		s.Close()
		return nil, fmt.Errorf("mux dial %#x: %w", port, err)
	}
	return muxConn{s}, nil
}

func (d *MuxDialer) session() (*yamux.Session, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sess != nil && !d.sess.IsClosed() {
		return d.sess, nil
	}
	rw, err := d.Open()
	if err != nil {
		return nil, fmt.Errorf("open mux channel: %w", err)
	}
	sess, err := yamux.Client(rw, muxConfig())
	if err != nil {
		rw.Close()
		return nil, err
	}
	d.sess = sess
	return sess, nil
}

// Close ends the session.
func (d *MuxDialer) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sess != nil {
		return d.sess.Close()
	}
	return nil
}

// muxConn is a yamux stream as a net.Conn that can half-close: yamux's
// Close sends FIN and keeps reading, which is CloseWrite.
type muxConn struct{ *yamux.Stream }

func (c muxConn) CloseWrite() error { return c.Stream.Close() }

// MuxHost is the host's end: it accepts the guest's streams and hands each
// to the listener for the port it names. It implements Listener.
type MuxHost struct {
	sess *yamux.Session

	mu        sync.Mutex
	listeners map[uint32]*muxListener
	fallback  func(port uint32, c net.Conn)
	done      chan struct{}
	err       error
}

// SetFallback hands streams for ports nobody listens on to f (which owns
// the connection) instead of refusing them: a relay to another transport.
func (h *MuxHost) SetFallback(f func(port uint32, c net.Conn)) {
	h.mu.Lock()
	h.fallback = f
	h.mu.Unlock()
}

// NewMuxHost serves a session over conn (the host end of the channel) until
// conn fails or Close.
func NewMuxHost(conn io.ReadWriteCloser) (*MuxHost, error) {
	sess, err := yamux.Server(conn, muxConfig())
	if err != nil {
		return nil, err
	}
	h := &MuxHost{sess: sess, listeners: make(map[uint32]*muxListener), done: make(chan struct{})}
	go h.accept()
	return h, nil
}

func (h *MuxHost) accept() {
	for {
		s, err := h.sess.AcceptStream()
		if err != nil {
			h.mu.Lock()
			h.err = err
			h.mu.Unlock()
			close(h.done)
			return
		}
		go h.route(s)
	}
}

// route reads the stream's port and queues it for that port's listener; a
// stream for a port nobody listens on is closed, as a refused dial.
func (h *MuxHost) route(s *yamux.Stream) {
	var hdr [4]byte
	s.SetReadDeadline(time.Now().Add(portHeaderTimeout))
	if _, err := io.ReadFull(s, hdr[:]); err != nil {
		s.Close()
		return
	}
	s.SetReadDeadline(time.Time{})
	port := binary.LittleEndian.Uint32(hdr[:])
	h.mu.Lock()
	l, fallback := h.listeners[port], h.fallback
	h.mu.Unlock()
	if l == nil && fallback != nil {
		fallback(port, muxConn{s})
		return
	}
	if l == nil || !l.offer(muxConn{s}) {
		s.Close()
	}
}

// Listen listens on port for streams the guest opens.
func (h *MuxHost) Listen(port uint32) (net.Listener, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.listeners[port]; ok {
		return nil, fmt.Errorf("mux port %#x: already listening", port)
	}
	l := &muxListener{h: h, port: port, conns: make(chan net.Conn, 16), closed: make(chan struct{})}
	h.listeners[port] = l
	return l, nil
}

// Done is closed when the session has ended.
func (h *MuxHost) Done() <-chan struct{} { return h.done }

// Close ends the session and every stream on it.
func (h *MuxHost) Close() error { return h.sess.Close() }

type muxListener struct {
	h      *MuxHost
	port   uint32
	conns  chan net.Conn
	once   sync.Once
	closed chan struct{}
}

func (l *muxListener) offer(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.closed:
		return false
	default:
		return false // backlog full: refuse like a full listen queue
	}
}

func (l *muxListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	case <-l.h.done:
		return nil, fmt.Errorf("mux session ended: %w", net.ErrClosed)
	}
}

func (l *muxListener) Close() error {
	l.once.Do(func() {
		l.h.mu.Lock()
		if l.h.listeners[l.port] == l {
			delete(l.h.listeners, l.port)
		}
		l.h.mu.Unlock()
		close(l.closed)
		for {
			select {
			case c := <-l.conns:
				c.Close()
			default:
				return
			}
		}
	})
	return nil
}

func (l *muxListener) Addr() net.Addr { return muxAddr(l.port) }

type muxAddr uint32

func (a muxAddr) Network() string { return "mux" }
func (a muxAddr) String() string  { return fmt.Sprintf("mux:%#x", uint32(a)) }

// errNoPort is returned when no virtio port carries the name asked for.
var errNoPort = errors.New("no virtio port with that name")
