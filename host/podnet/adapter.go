package podnet

import (
	"math"
	"net"
	"strings"

	"github.com/google/uuid"

	"github.com/uvmgcs/gcs/protocol"
)

// idSpace scopes the GUIDs this package derives.
var idSpace = uuid.MustParse("5b0c43e1-8f4b-4b8e-9e0a-3c6a2f1d7c10")

// NamespaceID derives a guest network namespace id (a GUID) from key, e.g.
// a pod sandbox id or its namespace path: the same key, the same id.
func NamespaceID(key string) string { return uuid.NewSHA1(idSpace, []byte(key)).String() }

// Route is one route of the pod's interface that the guest adapter must
// carry as well.
type Route struct {
	Dst    *net.IPNet // nil: the default route of Gw's family
	Gw     net.IP     // nil: on-link
	Metric int
}

// Config is what the pod's network gave its interface: the guest adapter
// gets exactly this.
type Config struct {
	MAC    net.HardwareAddr
	MTU    int
	Addrs  []*net.IPNet // global addresses with their prefixes
	Routes []Route      // routes through the interface, less those its addresses imply
}

// Gateways are the next hops of the default routes, IPv4 first as the
// kernel lists them.
func (c Config) Gateways() []net.IP {
	var gws []net.IP
	for _, r := range c.Routes {
		if r.Dst == nil && r.Gw != nil {
			gws = append(gws, r.Gw)
		}
	}
	return gws
}

// DNS is the resolver configuration a pod's guest namespace gets.
type DNS struct {
	Servers []string // IP addresses
	Search  []string // domains
}

// Adapter is the guest's Network request for c: the adapter id (a GUID)
// moves into guest network namespace nsID (a GUID) with c's MAC, addresses
// and routes. The MTU is the NIC's (qemu.TapNIC.MTU), not part of the
// request.
func (c Config) Adapter(nsID, id string, dns DNS) protocol.NetworkAdapter {
	a := protocol.NetworkAdapter{
		NamespaceID:   nsID,
		ID:            id,
		MacAddress:    c.MAC.String(),
		DNSServerList: strings.Join(dns.Servers, ","),
		DNSSuffix:     strings.Join(dns.Search, ","),
	}
	for _, n := range c.Addrs {
		ones, _ := n.Mask.Size()
		a.IPConfigs = append(a.IPConfigs, protocol.IPConfig{IPAddress: n.IP.String(), PrefixLength: uint8(ones)})
	}
	for _, r := range c.Routes {
		pr := protocol.Route{Metric: uint16(min(r.Metric, math.MaxUint16))}
		if r.Gw != nil {
			pr.NextHop = r.Gw.String()
		}
		switch {
		case r.Dst != nil:
			pr.DestinationPrefix = r.Dst.String()
		case r.Gw.To4() != nil:
			pr.DestinationPrefix = "0.0.0.0/0"
		default:
			pr.DestinationPrefix = "::/0"
		}
		a.Routes = append(a.Routes, pr)
	}
	return a
}
