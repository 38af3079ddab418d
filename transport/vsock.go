package transport

import (
	"context"
	"fmt"
	"net"

	"github.com/mdlayher/vsock"
)

// HostCID is the vsock context id of the host.
const HostCID uint32 = vsock.Host

// anyCID is what the vsock package reports as the local context id when the
// machine has no vsock device at all.
const anyCID uint32 = 0xFFFFFFFF

// localCID is the local context id when only the loopback transport is
// there (vsock_loopback, built into the UVM kernel): no peer beyond this
// machine.
const localCID uint32 = 1

// Vsock carries ports over AF_VSOCK: the guest dials CID (normally HostCID),
// the host listens on the port for any guest.
type Vsock struct {
	CID uint32
}

// VsockAvailable reports whether this machine has a usable vsock device: a
// missing one shows as the any-CID (or, with the loopback transport, the
// local CID) rather than as an error.
func VsockAvailable() bool {
	cid, err := vsock.ContextID()
	return err == nil && usableCID(cid)
}

// usableCID says whether a local context id names a vsock device that
// reaches another machine.
func usableCID(cid uint32) bool { return cid != anyCID && cid != localCID }

// Dial connects to port on v.CID. The vsock package has no context-aware
// dial, so ctx is honoured only before the dial starts.
func (v Vsock) Dial(ctx context.Context, port uint32) (net.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c, err := vsock.Dial(v.CID, port, nil)
	if err != nil {
		return nil, fmt.Errorf("vsock dial %d:%#x: %w", v.CID, port, err)
	}
	return c, nil
}

// Listen listens on port for connections from guests.
func (v Vsock) Listen(port uint32) (net.Listener, error) {
	l, err := vsock.Listen(port, nil)
	if err != nil {
		return nil, fmt.Errorf("vsock listen %#x: %w", port, err)
	}
	return l, nil
}
