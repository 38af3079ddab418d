//go:build ignore

// Package winio stands in, on Linux, for the names of
// github.com/Microsoft/go-winio that hcsshim's host-side bridge uses:
// VsockServiceID (the hvsocket service a vsock port maps to) and
// HvsockAddr/ListenHvsock, the default stdio listener, which a Linux run
// replaces through GuestConnectionConfig.IoListen and never calls.
package winio

import (
	"errors"
	"net"

	"github.com/Microsoft/go-winio/pkg/guid"
)

// HvsockAddr is an hvsocket address.
type HvsockAddr struct {
	VMID      guid.GUID
	ServiceID guid.GUID
}

// VsockServiceID is the hvsocket service ID of vsock port:
// <port>-facb-11e6-bd58-64006a7986d3, as go-winio computes it.
func VsockServiceID(port uint32) guid.GUID {
	g := guid.GUID{Data1: port, Data2: 0xfacb, Data3: 0x11e6,
		Data4: [8]byte{0xbd, 0x58, 0x64, 0x00, 0x6a, 0x79, 0x86, 0xd3}}
	return g
}

// ListenHvsock has no hvsocket to listen on off Windows.
func ListenHvsock(*HvsockAddr) (net.Listener, error) {
	return nil, errors.New("hvsocket is Windows-only: set GuestConnectionConfig.IoListen")
}
