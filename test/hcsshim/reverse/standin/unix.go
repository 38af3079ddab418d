//go:build ignore

package transport

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
)

// UnixTransport dials port P as the unix socket <Dir>/<P as 8 lowercase hex
// digits>, the layout of uvmgcs's host library: the host listens, the
// guest dials.
type UnixTransport struct{ Dir string }

var _ Transport = &UnixTransport{}

// Dial connects to port's socket.
func (t *UnixTransport) Dial(port uint32) (Connection, error) {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Net: "unix", Name: filepath.Join(t.Dir, fmt.Sprintf("%08x", port))})
	if err != nil {
		return nil, fmt.Errorf("unix dial port %#x: %w", port, err)
	}
	return c, nil
}

// ChooseTransport is the unix transport in $UVMGCS_UNIX_TRANSPORT_DIR when
// that is set, else vsock.
func ChooseTransport() Transport {
	if dir := os.Getenv("UVMGCS_UNIX_TRANSPORT_DIR"); dir != "" {
		return &UnixTransport{Dir: dir}
	}
	return &VsockTransport{}
}
