package runtime

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"os"
	goruntime "runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// socketPair is a connected pair of unix stream sockets as net.Conns.
func socketPair(t *testing.T) (relaySide, hostSide net.Conn) {
	t.Helper()
	dir := t.TempDir()
	l, err := net.Listen("unix", dir+"/s")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	acc := make(chan net.Conn, 1)
	go func() { c, _ := l.Accept(); acc <- c }()
	c, err := net.Dial("unix", dir+"/s")
	if err != nil {
		t.Fatal(err)
	}
	s := <-acc
	t.Cleanup(func() { c.Close(); s.Close() })
	return s, c
}

// TestIdleOutputsHoldNoGoroutine: the stdout and stderr of many idle
// processes wait without a goroutine each, and still carry what comes.
func TestIdleOutputsHoldNoGoroutine(t *testing.T) {
	const n = 50
	type rel struct {
		r              *Relay
		out, err       net.Conn
		childOut, cErr *os.File
	}
	var rs []rel
	before := goruntime.NumGoroutine()
	for range n {
		o, ho := socketPair(t)
		e, he := socketPair(t)
		r, err := NewPipeRelay(&Stdio{Out: o, Err: e})
		if err != nil {
			t.Fatal(err)
		}
		// The child's ends, kept open as a running process would.
		c := r.Child()
		co, err := dupFile(c[1])
		if err != nil {
			t.Fatal(err)
		}
		ce, err := dupFile(c[2])
		if err != nil {
			t.Fatal(err)
		}
		r.Start()
		rs = append(rs, rel{r, ho, he, co, ce})
	}
	defer func() {
		for _, x := range rs {
			x.childOut.Close()
			x.cErr.Close()
			x.r.Close()
		}
	}()
	time.Sleep(50 * time.Millisecond)
	if extra := goruntime.NumGoroutine() - before; extra > 5 {
		t.Errorf("%d goroutines for %d idle relays, want at most the waiter's", extra, n)
	}
	// Output still flows, large and in order, and the end reaches the host.
	want := make([]byte, 1<<20)
	rand.Read(want)
	x := rs[n/2]
	got := make(chan []byte)
	go func() { b, _ := io.ReadAll(x.out); got <- b }()
	if _, err := x.childOut.Write(want); err != nil {
		t.Fatal(err)
	}
	x.childOut.Close()
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("host read %d bytes, want the %d written", len(b), len(want))
	}
	x.cErr.Write([]byte("bye\n"))
	x.cErr.Close()
	if b, _ := io.ReadAll(x.err); string(b) != "bye\n" {
		t.Fatalf("stderr %q", b)
	}
	select {
	case <-x.r.Drained():
	case <-time.After(5 * time.Second):
		t.Fatal("not drained after both ends closed")
	}
	// An idle stream whose writer never closes is cut off after the grace.
	y := rs[0]
	if y.r.WaitDrained(20 * time.Millisecond) {
		t.Fatal("drained with the writers open")
	}
	if _, err := io.ReadAll(y.out); err != nil {
		t.Fatalf("host side after the cut-off: %v", err)
	}
}

func dupFile(f *os.File) (*os.File, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var nf *os.File
	var derr error
	rc.Control(func(fd uintptr) {
		var d int
		d, derr = dupCloexec(int(fd))
		if derr == nil {
			nf = os.NewFile(uintptr(d), f.Name())
		}
	})
	return nf, derr
}

func dupCloexec(fd int) (int, error) { return unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0) }
