//go:build linux

package uvm

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uvmgcs/gcs/guest/bridge"
	"github.com/uvmgcs/gcs/host"
	"github.com/uvmgcs/gcs/transport"
)

// machine is a Machine whose "VM" is the real guest bridge in this
// process, at the far end of a socket pair standing in for the serial
// channel.
type machine struct {
	host   net.Conn
	guest  net.Conn
	done   chan struct{}
	cancel context.CancelFunc
}

func socketPair(t *testing.T) (net.Conn, net.Conn) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) net.Conn {
		f := os.NewFile(uintptr(fd), "sp")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	return conn(fds[0]), conn(fds[1])
}

func (m *machine) Start(ctx context.Context) error {
	gctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	mux := bridge.NewMux()
	(&bridge.UVM{}).Register(mux)
	b := bridge.New(bridge.Config{Handler: mux, Capabilities: bridge.LinuxCapabilities(false)})
	d := &transport.MuxDialer{Open: func() (io.ReadWriteCloser, error) { return m.guest, nil }}
	go func() {
		b.Run(gctx, d)
		close(m.done)
	}()
	return nil
}

func (m *machine) AgentConn() net.Conn { return m.host }
func (m *machine) Shutdown(ctx context.Context) error {
	if m.cancel != nil {
		m.cancel()
	}
	m.host.Close()
	m.guest.Close()
	<-m.done
	return nil
}
func (m *machine) Done() <-chan struct{} { return m.done }

func TestStartNegotiatesOverTheChannel(t *testing.T) {
	h, g := socketPair(t)
	m := &machine{host: h, guest: g, done: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u, err := Start(ctx, m, host.Config{})
	if err != nil {
		t.Fatal(err)
	}
	gc := u.GuestConnection()
	if gc.Version() != 4 {
		t.Fatalf("version %d", gc.Version())
	}
	if _, err := gc.DumpStacks(ctx); err != nil {
		t.Fatal(err)
	}
	if err := u.Close(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-gc.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("connection still open after Close")
	}
}

func TestStartFailsWhenTheMachineStops(t *testing.T) {
	h, g := socketPair(t)
	m := &dead{machine{host: h, guest: g, done: make(chan struct{})}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := Start(ctx, m, host.Config{}); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("start on a machine that stopped: %v", err)
	}
}

// dead is a machine that stops at once, before any agent runs.
type dead struct{ machine }

func (d *dead) Start(ctx context.Context) error {
	close(d.done)
	return nil
}
func (d *dead) Shutdown(ctx context.Context) error { d.host.Close(); d.guest.Close(); return nil }
