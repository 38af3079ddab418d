//go:build windows

package transport

import (
	"fmt"
	"net"

	"github.com/Microsoft/go-winio"
	"github.com/Microsoft/go-winio/pkg/guid"
)

// HvSock carries ports over Hyper-V sockets on a Windows host: Listen
// accepts the connections one VM makes to a port's service ID
// (HvsockServiceID). VMID is the VM's runtime ID as HCS reports it, not the
// compute system's name. Binding needs the rights the VM's hvsocket
// configuration grants (the HCS driver's allow SYSTEM and Administrators).
type HvSock struct {
	VMID guid.GUID
}

// Listen listens on port for connections from the VM.
func (h HvSock) Listen(port uint32) (net.Listener, error) {
	addr := &winio.HvsockAddr{VMID: h.VMID, ServiceID: HvsockServiceID(port)}
	l, err := winio.ListenHvsock(addr)
	if err != nil {
		return nil, fmt.Errorf("hvsock listen %s port %#x: %w", h.VMID, port, err)
	}
	return l, nil
}

var _ Listener = HvSock{}
