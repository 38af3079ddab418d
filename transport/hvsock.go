package transport

import "github.com/Microsoft/go-winio/pkg/guid"

// HvsockServiceID is the Hyper-V socket service ID of a vsock port: the
// template 00000000-FACB-11E6-BD58-64006A7986D3 with the port as its first
// group. A Linux guest on Hyper-V that dials AF_VSOCK port P on the host
// reaches the host process listening on service HvsockServiceID(P) for that
// VM, so the guest keeps its vsock Dialer and a Windows host listens with
// HvSock. The bridge port 0x40000000 is 40000000-facb-11e6-bd58-64006a7986d3.
func HvsockServiceID(port uint32) guid.GUID {
	return guid.GUID{
		Data1: port,
		Data2: 0xFACB,
		Data3: 0x11E6,
		Data4: [8]byte{0xBD, 0x58, 0x64, 0x00, 0x6A, 0x79, 0x86, 0xD3},
	}
}
