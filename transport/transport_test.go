package transport

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
)

func TestUnixPath(t *testing.T) {
	u := Unix{Dir: "/run/x"}
	for port, want := range map[uint32]string{
		BridgePort:     "/run/x/40000000",
		FirstStdioPort: "/run/x/40000001",
		1:              "/run/x/00000001",
		0xdeadbeef:     "/run/x/deadbeef",
	} {
		if got := u.Path(port); got != want {
			t.Errorf("Path(%#x) = %s, want %s", port, got, want)
		}
	}
}

func TestUnixDialListenHalfClose(t *testing.T) {
	u := Unix{Dir: t.TempDir()}
	l, err := u.Listen(0x40000005)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := os.Stat(filepath.Join(u.Dir, "40000005")); err != nil {
		t.Fatalf("socket file: %v", err)
	}
	done := make(chan []byte)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(done)
			return
		}
		b, _ := io.ReadAll(c) // ends at the guest's half-close
		c.Write([]byte("reply"))
		c.Close()
		done <- b
	}()
	c, err := u.Dial(context.Background(), 0x40000005)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("hello"))
	if err := CloseWrite(c); err != nil {
		t.Fatal(err)
	}
	reply, _ := io.ReadAll(c)
	if got := <-done; string(got) != "hello" || string(reply) != "reply" {
		t.Fatalf("host read %q, guest read %q", got, reply)
	}
}

func TestUnixListenReplacesStaleSocketOnly(t *testing.T) {
	u := Unix{Dir: t.TempDir()}
	l, err := u.Listen(7)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.Listen(7); err == nil {
		t.Fatal("second listener on a live socket succeeded")
	}
	// A socket file nobody listens on is stale: take it over.
	ul := l.(*net.UnixListener)
	ul.SetUnlinkOnClose(false)
	l.Close()
	l2, err := u.Listen(7)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	l2.Close()
	if _, err := os.Stat(u.Path(7)); !os.IsNotExist(err) {
		t.Fatalf("socket left after close: %v", err)
	}
}

func TestUnixDialNoListener(t *testing.T) {
	u := Unix{Dir: t.TempDir()}
	if _, err := u.Dial(context.Background(), 9); err == nil {
		t.Fatal("dial with no listener succeeded")
	}
}

// A guest with no vsock device reads the any-CID, one whose only vsock
// transport is the loopback reads CID 1 (VMADDR_CID_LOCAL): neither
// reaches the host. A guest's CID (3 and up) and the host's (2) do.
func TestUsableCID(t *testing.T) {
	for cid, want := range map[uint32]bool{0xFFFFFFFF: false, 1: false, 2: true, 3: true, 1234: true} {
		if got := usableCID(cid); got != want {
			t.Errorf("usableCID(%d) = %v, want %v", cid, got, want)
		}
	}
}
