package share

import (
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// TestKernelFileRelay: a connection without a descriptor of its own (a
// multiplexed stream) reaches the kernel through a socket pair; bytes
// flow both ways, and the kernel letting go of its end closes the host's
// connection.
func TestKernelFileRelay(t *testing.T) {
	guest, host := net.Pipe()
	f, r, err := kernelFile(guest)
	if err != nil {
		t.Fatal(err)
	}
	if r == nil {
		t.Fatal("a pipe got no relay")
	}
	go f.Write([]byte("Tversion"))
	buf := make([]byte, 8)
	if _, err := io.ReadFull(host, buf); err != nil || string(buf) != "Tversion" {
		t.Fatalf("host read %q, %v", buf, err)
	}
	go host.Write([]byte("Rversion"))
	if _, err := io.ReadFull(f, buf); err != nil || string(buf) != "Rversion" {
		t.Fatalf("kernel end read %q, %v", buf, err)
	}
	f.Close() // unmounted
	host.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := host.Read(buf); err != io.EOF {
		t.Fatalf("host after the kernel let go: %v, want EOF", err)
	}
	host.Close()
	r.wait(5 * time.Second)
}

// TestKernelFileSocket: a unix connection hands the kernel a duplicate of
// its own descriptor, and no relay runs.
func TestKernelFileSocket(t *testing.T) {
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("unix", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	f, r, err := kernelFile(c)
	if err != nil || r != nil {
		t.Fatalf("kernelFile: relay %v, %v", r, err)
	}
	if _, err := f.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	f.Close()
	buf := make([]byte, 2)
	n, err := io.ReadAtLeast(srv, buf, 1)
	if string(buf[:n]) != "x" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	if _, err := srv.Read(buf); err != io.EOF {
		t.Fatalf("after the last descriptor closed: %v, want EOF", err)
	}
}
