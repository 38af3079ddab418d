package runtime

import (
	"errors"
	"io"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// outputStream copies a process's output pipe to its host connection.
// While the pipe is idle it holds neither a buffer nor a goroutine: it is
// armed in an idleWaiter, and each time the pipe turns readable a
// goroutine reads what there is without blocking, writes it to the host,
// and arms the pipe again once a read finds it empty.
type outputStream struct {
	w   *idleWaiter
	dst io.Writer
	src *os.File
	rc  syscall.RawConn
	fd  int
	end func() // called once: the pipe reached its end, failed, or was cut off

	mu         sync.Mutex
	id         uint32
	registered bool // in w's set
	running    bool // a goroutine is copying
	ended      bool // end was (or is being) called
	srcClosed  bool // cut off by stop
	class      int  // copyBuffers class the next read borrows from
}

// startOutput starts copying src to dst on w. It reports false, having
// done nothing, when src cannot be waited on this way (not a non-blocking
// descriptor Go's poller holds); the caller then copies on a goroutine.
func startOutput(w *idleWaiter, dst io.Writer, src *os.File, end func()) (*outputStream, bool) {
	rc, err := src.SyscallConn()
	if err != nil {
		return nil, false
	}
	fd, nonblocking := -1, false
	if err := rc.Control(func(f uintptr) {
		fl, err := unix.FcntlInt(f, unix.F_GETFL, 0)
		fd, nonblocking = int(f), err == nil && fl&unix.O_NONBLOCK != 0
	}); err != nil || !nonblocking {
		return nil, false
	}
	s := &outputStream{w: w, dst: dst, src: src, rc: rc, fd: fd, end: end}
	// Held until the id is known: a report may come at once.
	s.mu.Lock()
	defer s.mu.Unlock()
	id, err := w.add(fd, s.step)
	if err != nil {
		return nil, false
	}
	s.id, s.registered = id, true
	return s, true
}

// step copies what the pipe holds, then arms it again or ends the stream.
func (s *outputStream) step() {
	s.mu.Lock()
	if s.ended || s.running {
		s.mu.Unlock()
		return // a stale report
	}
	s.running = true
	s.mu.Unlock()
	for {
		buf := copyBuffers[s.class].Get().(*[]byte)
		n, err := s.read(*buf)
		var werr error
		if n > 0 {
			_, werr = s.dst.Write((*buf)[:n])
		}
		full := n == len(*buf)
		copyBuffers[s.class].Put(buf)
		if full && s.class < len(copyBuffers)-1 {
			s.class++
		}
		switch {
		case werr != nil, err != nil && !errors.Is(err, unix.EAGAIN), n == 0 && err == nil:
			s.finish()
			return
		case err == nil:
			continue
		}
		// Empty: wait for more, holding nothing.
		s.mu.Lock()
		s.running = false
		if s.srcClosed || s.w.rearm(s.fd, s.id) != nil {
			s.mu.Unlock()
			s.finish()
			return
		}
		s.mu.Unlock()
		return
	}
}

// read reads once without blocking: EAGAIN when the pipe is empty.
func (s *outputStream) read(b []byte) (n int, err error) {
	if cerr := s.rc.Read(func(fd uintptr) bool {
		for {
			n, err = unix.Read(int(fd), b)
			if !errors.Is(err, unix.EINTR) {
				return true
			}
		}
	}); cerr != nil {
		return 0, cerr
	}
	return max(n, 0), err
}

// finish ends the stream once.
func (s *outputStream) finish() {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.ended = true
	s.forget()
	s.mu.Unlock()
	s.end()
}

// forget takes the pipe out of the waiter's set, while it is still open:
// once closed, its descriptor number may name another file. s.mu is held.
func (s *outputStream) forget() {
	if s.registered {
		s.w.remove(s.fd, s.id)
		s.registered = false
	}
}

// stop cuts the stream off: it closes the pipe, and ends the stream unless
// a copy under way does on seeing the pipe closed.
func (s *outputStream) stop() {
	s.mu.Lock()
	if s.srcClosed {
		s.mu.Unlock()
		return
	}
	s.srcClosed = true
	s.forget()
	idle := !s.running && !s.ended
	if idle {
		s.ended = true
	}
	s.src.Close()
	s.mu.Unlock()
	if idle {
		s.end()
	}
}
