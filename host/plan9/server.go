// Package plan9 serves host directories to a guest over 9p2000.L, the way
// hcsshim's hosts (HCS's Plan9 device) do for Linux utility VMs: a server
// on one port of the agent channel exports directories by name, and the
// guest mounts one with trans=fd, naming it as the attach name (aname).
// The protocol is github.com/hugelgupf/p9's server; this package supplies
// the file system (a directory resolved beneath its root one component at
// a time, never through a symlink, read-only when asked) and owns the
// listener and its connections, so that Close leaves no goroutine behind.
package plan9

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"

	"github.com/hugelgupf/p9/p9"
)

// maxName bounds an export name (the guest's attach name).
const maxName = 255

// Server serves its exports on the listeners handed to Serve. It is safe
// for concurrent use.
type Server struct {
	p9 *p9.Server

	mu      sync.Mutex
	exports map[string]*export
	ls      map[net.Listener]struct{}
	conns   map[net.Conn]struct{}
	closed  bool
	wg      sync.WaitGroup
}

// New returns a Server with no exports.
func New() *Server {
	s := &Server{
		exports: make(map[string]*export),
		ls:      make(map[net.Listener]struct{}),
		conns:   make(map[net.Conn]struct{}),
	}
	s.p9 = p9.NewServer(&root{s: s})
	return s
}

// ErrClosed is returned by a Server's methods once it is closed.
var ErrClosed = errors.New("plan9 server closed")

// Export makes dir available to guests under name (their aname),
// read-only when readOnly: the server then refuses every change, whatever
// the guest's mount says.
func (s *Server) Export(name, dir string, readOnly bool) error {
	if name == "" || len(name) > maxName || strings.ContainsAny(name, "/,\x00") || name == "." || name == ".." {
		return fmt.Errorf("export name %q: want one path component without commas", name)
	}
	e, err := openExport(dir, readOnly)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		e.close()
		return ErrClosed
	}
	if _, ok := s.exports[name]; ok {
		e.close()
		return fmt.Errorf("export %q already exists", name)
	}
	s.exports[name] = e
	return nil
}

// Unexport stops offering name to new attaches; connections already
// attached keep their files until they close (Close ends them).
func (s *Server) Unexport(name string) {
	s.mu.Lock()
	e := s.exports[name]
	delete(s.exports, name)
	s.mu.Unlock()
	if e != nil {
		e.close()
	}
}

func (s *Server) lookup(name string) (*export, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.exports[name]
	return e, ok
}

// Serve accepts connections on l and serves each until it closes, or
// until Close. It returns when l is closed; it owns l.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return ErrClosed
	}
	s.ls[l] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.ls, l)
		s.mu.Unlock()
		l.Close()
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		if !s.track(c) {
			c.Close()
			return nil
		}
		go func() {
			defer s.wg.Done()
			defer s.untrack(c)
			// Handle closes c once every request on it is answered.
			s.p9.Handle(c, c)
		}()
	}
}

// track records c as served; false once the server is closed.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Conns is how many guest connections are being served.
func (s *Server) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Close stops every listener, closes every connection, waits for their
// goroutines and drops the exports. It is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for l := range s.ls {
		l.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	exports := s.exports
	s.exports = map[string]*export{}
	s.mu.Unlock()
	s.wg.Wait()
	for _, e := range exports {
		e.close()
	}
	return nil
}
