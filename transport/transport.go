// Package transport owns how bytes get between host and guest: the guest's
// one-method Dialer and the host's one-method Listener, each addressed by a
// 32-bit vsock-style port, with implementations over vsock and over unix
// sockets in a directory.
package transport

import (
	"context"
	"net"
)

// BridgePort is the port the guest dials for the bridge connection.
const BridgePort uint32 = 0x40000000

// FirstStdioPort is the first port a host hands out for process stdio.
const FirstStdioPort uint32 = 0x40000001

// Dialer opens a stream from the guest to a port the host listens on.
type Dialer interface {
	Dial(ctx context.Context, port uint32) (net.Conn, error)
}

// Listener listens on the host for streams the guest dials to port.
type Listener interface {
	Listen(port uint32) (net.Listener, error)
}

// CloseWriter is a connection that can half-close: shut its write side and
// keep reading. Unix and vsock connections are CloseWriters.
type CloseWriter interface {
	CloseWrite() error
}

// CloseWrite half-closes c when it can, and closes it fully otherwise.
func CloseWrite(c net.Conn) error {
	if cw, ok := c.(CloseWriter); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}
