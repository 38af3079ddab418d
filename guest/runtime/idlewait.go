package runtime

import (
	"errors"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// idleWaiter waits for many idle file descriptors to turn readable on one
// goroutine for the whole process, so that an idle output stream costs no
// goroutine (and no goroutine stack: about 4 KiB each, 0.8 MiB for the
// stdout and stderr of 100 containers) while it waits.
//
// Its descriptors are in an epoll set of its own, each one-shot: once
// reported it stays disarmed until its stream has read all there was and
// arms it again. The set's own descriptor is in Go's poller, so the
// waiting goroutine is parked there, not in a blocking system call on a
// thread of its own. A report may be stale (the stream moved on, or its
// descriptor number was reused); streams treat a report as a hint to try a
// non-blocking read.
type idleWaiter struct {
	ep *os.File
	fd int // ep's; never ep.Fd(), which would make it blocking
	rc syscall.RawConn

	mu   sync.Mutex
	next uint32
	fns  map[uint32]func() // by the id carried in the event
}

// outputWaiter is the process's idleWaiter, made on first use; nil (with
// the error) when epoll is not to be had, and streams then wait on
// goroutines of their own. Like Go's own poller, one serves the process.
var outputWaiter = sync.OnceValues(newIdleWaiter)

func newIdleWaiter() (*idleWaiter, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	ep := os.NewFile(uintptr(fd), "epoll")
	rc, err := ep.SyscallConn()
	if err != nil {
		ep.Close()
		return nil, err
	}
	w := &idleWaiter{ep: ep, fd: fd, rc: rc, fns: make(map[uint32]func())}
	go w.run()
	return w, nil
}

// run calls each armed descriptor's function, on a goroutine of its own,
// once the descriptor is readable or hung up.
func (w *idleWaiter) run() {
	events := make([]unix.EpollEvent, 32)
	for {
		var n int
		var werr error
		err := w.rc.Read(func(fd uintptr) bool {
			n, werr = unix.EpollWait(int(fd), events, 0)
			// Nothing ready: park in Go's poller until the set is.
			return werr != nil || n > 0
		})
		if err != nil {
			return
		}
		if werr != nil {
			if errors.Is(werr, unix.EINTR) {
				continue
			}
			return
		}
		w.mu.Lock()
		for _, ev := range events[:n] {
			if fn := w.fns[uint32(ev.Fd)]; fn != nil {
				go fn()
			}
		}
		w.mu.Unlock()
	}
}

const idleEvents = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT

// add arms fd: fn runs once it is readable. The returned id names it to
// rearm and remove.
func (w *idleWaiter) add(fd int, fn func()) (uint32, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.next++
	for w.fns[w.next] != nil || w.next == 0 {
		w.next++
	}
	id := w.next
	ev := unix.EpollEvent{Events: idleEvents, Fd: int32(id)}
	if err := unix.EpollCtl(w.epfd(), unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return 0, os.NewSyscallError("epoll_ctl", err)
	}
	w.fns[id] = fn
	return id, nil
}

// rearm arms fd again after its function ran.
func (w *idleWaiter) rearm(fd int, id uint32) error {
	ev := unix.EpollEvent{Events: idleEvents, Fd: int32(id)}
	return os.NewSyscallError("epoll_ctl", unix.EpollCtl(w.epfd(), unix.EPOLL_CTL_MOD, fd, &ev))
}

// remove forgets fd; call it before closing fd.
func (w *idleWaiter) remove(fd int, id uint32) {
	w.mu.Lock()
	delete(w.fns, id)
	w.mu.Unlock()
	_ = unix.EpollCtl(w.epfd(), unix.EPOLL_CTL_DEL, fd, nil)
}

// epfd is the epoll set's descriptor; it lives as long as the process.
func (w *idleWaiter) epfd() int { return w.fd }
