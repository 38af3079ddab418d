package host

import (
	"context"
	"fmt"
	"net"

	"github.com/uvmgcs/gcs/transport"
)

// stream is one stdio port's listener, accepting its single connection in
// the background so the guest's dial never waits on the host.
type stream struct {
	l    net.Listener
	done chan struct{}
	c    net.Conn
	err  error
}

func listen(io transport.Listener, port uint32) (*stream, error) {
	l, err := io.Listen(port)
	if err != nil {
		return nil, err
	}
	s := &stream{l: l, done: make(chan struct{})}
	go func() {
		s.c, s.err = l.Accept()
		l.Close() // one connection per port
		close(s.done)
	}()
	return s, nil
}

// accept returns the stream's connection once the guest has dialed.
func (s *stream) accept(ctx context.Context, dead <-chan struct{}) (net.Conn, error) {
	select {
	case <-s.done:
		if s.err != nil {
			return nil, s.err
		}
		c := s.c
		s.c = nil // now the caller's
		return c, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-dead:
		return nil, fmt.Errorf("guest connection closed: %w", net.ErrClosed)
	}
}

// close stops listening and closes an unclaimed connection.
func (s *stream) close() {
	s.l.Close()
	<-s.done
	if s.c != nil {
		s.c.Close()
	}
}

func closeStreams(ss [3]*stream) {
	for _, s := range ss {
		if s != nil {
			s.close()
		}
	}
}
