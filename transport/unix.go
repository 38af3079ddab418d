package transport

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
)

// Unix carries every port over unix sockets in one directory: the socket for
// port P is Dir/<P as 8 lowercase hex digits> (the bridge is Dir/40000000).
// The host listens, the guest dials.
type Unix struct {
	Dir string
}

// Path is the socket path for port.
func (u Unix) Path(port uint32) string {
	return filepath.Join(u.Dir, fmt.Sprintf("%08x", port))
}

// Dial connects to the host's socket for port.
func (u Unix) Dial(ctx context.Context, port uint32) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", u.Path(port))
	if err != nil {
		return nil, fmt.Errorf("dial port %#x: %w", port, err)
	}
	return c, nil
}

// Listen creates the socket for port, replacing a stale socket left by an
// earlier listener. The socket file is removed when the listener closes.
func (u Unix) Listen(port uint32) (net.Listener, error) {
	p := u.Path(port)
	if fi, err := os.Lstat(p); err == nil && fi.Mode()&fs.ModeSocket != 0 {
		if c, err := net.Dial("unix", p); err == nil {
			c.Close()
			return nil, fmt.Errorf("listen port %#x: %s is in use", port, p)
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("listen port %#x: remove stale socket: %w", port, err)
		}
	}
	l, err := net.Listen("unix", p)
	if err != nil {
		return nil, fmt.Errorf("listen port %#x: %w", port, err)
	}
	return l, nil
}
