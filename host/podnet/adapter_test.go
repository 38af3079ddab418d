package podnet

import (
	"net"
	"reflect"
	"testing"

	"github.com/uvmgcs/gcs/protocol"
)

func cidr(s string) *net.IPNet {
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	n.IP = ip
	return n
}

// TestAdapter: a dual-stack pod interface with a default route per family,
// a routed prefix and an on-link one becomes the guest request.
func TestAdapter(t *testing.T) {
	mac, _ := net.ParseMAC("0a:58:0a:63:00:02")
	c := Config{
		MAC: mac, MTU: 1450,
		Addrs: []*net.IPNet{cidr("10.99.0.2/24"), cidr("fd00:99::2/64")},
		Routes: []Route{
			{Gw: net.ParseIP("10.99.0.1").To4()},
			{Dst: cidr("10.100.0.0/16"), Gw: net.ParseIP("10.99.0.254").To4(), Metric: 1 << 20},
			{Dst: cidr("192.168.7.0/24")},
			{Gw: net.ParseIP("fd00:99::1")},
		},
	}
	got := c.Adapter("ns-guid", "adapter-guid", DNS{Servers: []string{"10.99.0.53", "fd00::53"}, Search: []string{"a.test", "b.test"}})
	want := protocol.NetworkAdapter{
		NamespaceID: "ns-guid", ID: "adapter-guid", MacAddress: "0a:58:0a:63:00:02",
		DNSServerList: "10.99.0.53,fd00::53", DNSSuffix: "a.test,b.test",
		IPConfigs: []protocol.IPConfig{{IPAddress: "10.99.0.2", PrefixLength: 24}, {IPAddress: "fd00:99::2", PrefixLength: 64}},
		Routes: []protocol.Route{
			{NextHop: "10.99.0.1", DestinationPrefix: "0.0.0.0/0"},
			{NextHop: "10.99.0.254", DestinationPrefix: "10.100.0.0/16", Metric: 65535},
			{DestinationPrefix: "192.168.7.0/24"},
			{NextHop: "fd00:99::1", DestinationPrefix: "::/0"},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Adapter =\n%+v\nwant\n%+v", got, want)
	}
	if gws := c.Gateways(); len(gws) != 2 || gws[0].String() != "10.99.0.1" || gws[1].String() != "fd00:99::1" {
		t.Errorf("Gateways = %v", gws)
	}
}

func TestNamespaceID(t *testing.T) {
	a, b := NamespaceID("/var/run/netns/cni-1"), NamespaceID("/var/run/netns/cni-2")
	if a == b || a != NamespaceID("/var/run/netns/cni-1") || len(a) != 36 {
		t.Errorf("NamespaceID: %s, %s", a, b)
	}
}
