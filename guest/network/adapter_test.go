package network

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/uvmgcs/gcs/protocol"
)

const testNS = "6F4F3A1B-0C4D-4E2A-9B1C-2D3E4F5A6B7C"

func validAdapter() protocol.NetworkAdapter {
	return protocol.NetworkAdapter{
		NamespaceID:   testNS,
		ID:            "A1B2C3D4-0000-1111-2222-333344445555",
		MacAddress:    "00-15-5D-AA-bb-01",
		DNSServerList: "10.0.0.1,8.8.8.8",
		DNSSuffix:     "corp.example.com, example.com",
		EncapOverhead: 50,
		IPConfigs:     []protocol.IPConfig{{IPAddress: "10.0.0.5", PrefixLength: 24}},
		Routes: []protocol.Route{
			{NextHop: "10.0.0.1", DestinationPrefix: "0.0.0.0/0"},
			{NextHop: "192.168.9.1", DestinationPrefix: "172.16.0.0/12", Metric: 7},
		},
	}
}

func TestParseAdapter(t *testing.T) {
	a := validAdapter()
	p, err := parseAdapter(&a)
	if err != nil {
		t.Fatal(err)
	}
	if p.ns != strings.ToLower(testNS) || p.key != strings.ToLower(a.ID) || p.mac.String() != "00:15:5d:aa:bb:01" || p.overhead != 50 {
		t.Fatalf("plan %+v", p)
	}
	if len(p.addrs) != 1 || p.addrs[0].String() != "10.0.0.5/24" {
		t.Fatalf("addresses %v", p.addrs)
	}
	// The gateway outside 10.0.0.0/24 gets an on-link host route first.
	var got []string
	for _, r := range p.routes {
		got = append(got, fmt.Sprintf("%s via %v metric %d", describe(r.dst), r.gw, r.metric))
	}
	want := []string{"192.168.9.1/32 via <nil> metric 0", "default via 10.0.0.1 metric 0", "172.16.0.0/12 via 192.168.9.1 metric 7"}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Fatalf("routes\n got %q\nwant %q", got, want)
	}
	if rc := string(p.dns.resolvConf()); rc != "search corp.example.com example.com\nnameserver 10.0.0.1\nnameserver 8.8.8.8\n" {
		t.Fatalf("resolv.conf %q", rc)
	}
}

func TestParseAdapterRejects(t *testing.T) {
	many := make([]string, 300)
	for i := range many {
		many[i] = fmt.Sprintf("d%d.example.com", i)
	}
	long := strings.Repeat("a", 60) + "." + strings.Repeat("b", 60) + "." + strings.Repeat("c", 60) + ".example"
	for _, tc := range []struct {
		name string
		edit func(a *protocol.NetworkAdapter)
		want error
	}{
		{"namespace not a GUID", func(a *protocol.NetworkAdapter) { a.NamespaceID = "../../etc" }, errdefs.ErrInvalidArgument},
		{"no namespace", func(a *protocol.NetworkAdapter) { a.NamespaceID = "" }, errdefs.ErrInvalidArgument},
		{"adapter id not a GUID", func(a *protocol.NetworkAdapter) { a.ID = "eth0" }, errdefs.ErrInvalidArgument},
		{"bad MAC", func(a *protocol.NetworkAdapter) { a.MacAddress = "00-15-5D-AA-BB" }, errdefs.ErrInvalidArgument},
		{"no MAC", func(a *protocol.NetworkAdapter) { a.MacAddress = "" }, errdefs.ErrInvalidArgument},
		{"bad IP", func(a *protocol.NetworkAdapter) { a.IPConfigs[0].IPAddress = "10.0.0.300" }, errdefs.ErrInvalidArgument},
		{"prefix too long", func(a *protocol.NetworkAdapter) { a.IPConfigs[0].PrefixLength = 33 }, errdefs.ErrInvalidArgument},
		{"no prefix", func(a *protocol.NetworkAdapter) { a.IPConfigs[0].PrefixLength = 0 }, errdefs.ErrInvalidArgument},
		{"bad route prefix", func(a *protocol.NetworkAdapter) { a.Routes[1].DestinationPrefix = "172.16.0.0/40" }, errdefs.ErrInvalidArgument},
		{"route family mismatch", func(a *protocol.NetworkAdapter) { a.Routes[1].DestinationPrefix = "fd00::/8" }, errdefs.ErrInvalidArgument},
		{"default without next hop", func(a *protocol.NetworkAdapter) { a.Routes[0].NextHop = "" }, errdefs.ErrInvalidArgument},
		{"bad next hop", func(a *protocol.NetworkAdapter) { a.Routes[0].NextHop = "gateway" }, errdefs.ErrInvalidArgument},
		{"bad DNS server", func(a *protocol.NetworkAdapter) { a.DNSServerList = "10.0.0.1,nameserver" }, errdefs.ErrInvalidArgument},
		{"300 search domains", func(a *protocol.NetworkAdapter) { a.DNSSuffix = strings.Join(many, ",") }, errdefs.ErrInvalidArgument},
		{"search list over 256 characters", func(a *protocol.NetworkAdapter) { a.DNSSuffix = long + " " + long }, errdefs.ErrInvalidArgument},
		{"bad search domain", func(a *protocol.NetworkAdapter) { a.DNSSuffix = "exa mple/com" }, errdefs.ErrInvalidArgument},
	} {
		a := validAdapter()
		tc.edit(&a)
		_, err := parseAdapter(&a)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestMACForms(t *testing.T) {
	a, err := ParseMAC("00-15-5D-AA-BB-01")
	if err != nil {
		t.Fatal(err)
	}
	b, err := ParseMAC("00:15:5d:aa:bb:01")
	if err != nil || a.String() != b.String() {
		t.Fatalf("%v %v %v", a, b, err)
	}
}

func TestAdapterKeyFallsBackToMAC(t *testing.T) {
	k, err := adapterKey(&protocol.NetworkAdapter{MacAddress: "00-15-5D-AA-BB-01"})
	if err != nil || k != "00:15:5d:aa:bb:01" {
		t.Fatalf("%q %v", k, err)
	}
	if _, err := adapterKey(&protocol.NetworkAdapter{}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("no ID or MAC: %v", err)
	}
}

func TestDNSMerge(t *testing.T) {
	a, _ := parseDNS("10.0.0.1 10.0.0.2", "a.example")
	b, _ := parseDNS("10.0.0.2,10.0.0.3", "A.example,b.example")
	got := string(a.merge(b).resolvConf())
	want := "search a.example b.example\nnameserver 10.0.0.1\nnameserver 10.0.0.2\nnameserver 10.0.0.3\n"
	if got != want {
		t.Fatalf("got %q want %q", got, want)
	}
	if d, err := parseDNS("", ""); err != nil || !d.empty() {
		t.Fatalf("empty: %+v %v", d, err)
	}
}

func TestHostsFile(t *testing.T) {
	b, err := HostsFile("pod-1.example")
	if err != nil || !strings.HasSuffix(string(b), "127.0.1.1\tpod-1.example\n") || !strings.HasPrefix(string(b), "127.0.0.1\tlocalhost\n") {
		t.Fatalf("%q %v", b, err)
	}
	for _, bad := range []string{"", "a/b", "-a", "a..b", "a b", strings.Repeat("a", 65), "a_b"} {
		if _, err := HostsFile(bad); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("hostname %q: %v", bad, err)
		}
	}
}
