//go:build linux

package transport

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// socketPair returns two connected stream sockets.
func socketPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
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

func TestMuxPortsAndHalfClose(t *testing.T) {
	g, h := socketPair(t)
	host, err := NewMuxHost(h)
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	d := &MuxDialer{Open: func() (io.ReadWriteCloser, error) { return g, nil }}
	defer d.Close()

	l, err := host.Listen(BridgePort)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := host.Listen(BridgePort); err == nil {
		t.Fatal("second listener on one port")
	}
	ctx := context.Background()
	c, err := d.Dial(ctx, BridgePort)
	if err != nil {
		t.Fatal(err)
	}
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "ping")
	CloseWrite(c) // half-close: s reads EOF, c still reads
	got, _ := io.ReadAll(s)
	io.WriteString(s, "pong")
	s.Close()
	back, _ := io.ReadAll(c)
	if string(got) != "ping" || string(back) != "pong" {
		t.Fatalf("got %q back %q", got, back)
	}

	// A port nobody listens on: the stream is closed at once.
	c2, err := d.Dial(ctx, 0x40000099)
	if err != nil {
		t.Fatal(err)
	}
	c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c2.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("unknown port read: %v, want EOF", err)
	}

	// The channel dies: Accept fails instead of hanging.
	g.Close()
	select {
	case <-host.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("host session did not end")
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("accept after the channel died: %v", err)
	}
}

// TestMuxDialerReopens: after the host end goes away the next Dial opens a
// fresh session, as when the host reconnects to the serial port.
func TestMuxDialerReopens(t *testing.T) {
	opens := make(chan net.Conn, 2)
	hosts := make(chan *MuxHost, 2)
	d := &MuxDialer{Open: func() (io.ReadWriteCloser, error) {
		g, h := socketPair(t)
		host, err := NewMuxHost(h)
		if err != nil {
			return nil, err
		}
		opens <- h
		hosts <- host
		return g, nil
	}}
	defer d.Close()
	for i := 0; i < 2; i++ {
		c, err := d.Dial(context.Background(), 7)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		h := <-opens
		host := <-hosts
		host.Close()
		h.Close()
		// Wait until the dialer's session sees the end.
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			d.mu.Lock()
			closed := d.sess.IsClosed()
			d.mu.Unlock()
			if closed {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if len(opens) != 0 {
		t.Fatal("unexpected extra opens")
	}
}

func TestFindVirtioPort(t *testing.T) {
	sys := t.TempDir()
	for dev, name := range map[string]string{"vport1p1": "other", "vport2p1": "gcs"} {
		d := filepath.Join(sys, "class", "virtio-ports", dev)
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, "name"), []byte(name+"\n"), 0o644)
	}
	p, err := FindVirtioPort(sys, "/dev", "gcs")
	if err != nil || p != "/dev/vport2p1" {
		t.Fatalf("FindVirtioPort = %q, %v", p, err)
	}
	if _, err := FindVirtioPort(sys, "/dev", "none"); !errors.Is(err, errNoPort) {
		t.Fatalf("missing port: %v", err)
	}
}

func TestMuxFallback(t *testing.T) {
	g, h := socketPair(t)
	host, err := NewMuxHost(h)
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	got := make(chan uint32, 1)
	host.SetFallback(func(port uint32, c net.Conn) {
		got <- port
		io.WriteString(c, "relayed")
		c.Close()
	})
	d := &MuxDialer{Open: func() (io.ReadWriteCloser, error) { return g, nil }}
	defer d.Close()
	c, err := d.Dial(context.Background(), 0x40000123)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(c)
	if p := <-got; p != 0x40000123 || string(b) != "relayed" {
		t.Fatalf("port %#x, read %q", p, b)
	}
}
