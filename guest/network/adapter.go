package network

import (
	"fmt"
	"net"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/uvmgcs/gcs/internal/names"
	"github.com/uvmgcs/gcs/protocol"
)

// NamespaceKey validates a NamespaceID and returns the form namespaces are
// keyed and named by (lower case).
func NamespaceKey(id string) (string, error) {
	if !names.GUID(id) {
		return "", fmt.Errorf("network namespace id %q: want a GUID: %w", id, errdefs.ErrInvalidArgument)
	}
	return strings.ToLower(id), nil
}

// ParseMAC parses a MAC address written with '-' or ':' separators, in
// either case.
func ParseMAC(s string) (net.HardwareAddr, error) {
	mac, err := net.ParseMAC(s)
	if err != nil || len(mac) != 6 {
		return nil, fmt.Errorf("MAC address %q: want six hex bytes separated by '-' or ':': %w", s, errdefs.ErrInvalidArgument)
	}
	return mac, nil
}

// plan is a validated adapter request: everything the Manager applies,
// checked before anything is touched.
type plan struct {
	ns       string // namespace key
	key      string // adapter key: the lower-case ID, else the MAC
	mac      net.HardwareAddr
	overhead int
	addrs    []*net.IPNet
	routes   []route
	dns      dnsConfig
}

// route is one route to install. A nil dst is the default route of gw's
// family; a nil gw is an on-link route.
type route struct {
	dst    *net.IPNet
	gw     net.IP
	metric int
}

// adapterKey is how an adapter is found again on Remove: its ID when the
// request carries one (hcsshim's Remove carries only the ID), else its MAC.
func adapterKey(a *protocol.NetworkAdapter) (string, error) {
	if a.ID != "" {
		if !names.GUID(a.ID) {
			return "", fmt.Errorf("adapter id %q: want a GUID: %w", a.ID, errdefs.ErrInvalidArgument)
		}
		return strings.ToLower(a.ID), nil
	}
	if a.MacAddress == "" {
		return "", fmt.Errorf("adapter names neither an ID nor a MAC address: %w", errdefs.ErrInvalidArgument)
	}
	mac, err := ParseMAC(a.MacAddress)
	if err != nil {
		return "", err
	}
	return mac.String(), nil
}

// parseAdapter validates an Add request.
func parseAdapter(a *protocol.NetworkAdapter) (*plan, error) {
	ns, err := NamespaceKey(a.NamespaceID)
	if err != nil {
		return nil, err
	}
	key, err := adapterKey(a)
	if err != nil {
		return nil, err
	}
	mac, err := ParseMAC(a.MacAddress)
	if err != nil {
		return nil, err
	}
	p := &plan{ns: ns, key: key, mac: mac, overhead: int(a.EncapOverhead)}
	for _, c := range a.IPConfigs {
		addr, err := parseIPConfig(c)
		if err != nil {
			return nil, err
		}
		p.addrs = append(p.addrs, addr)
	}
	if p.routes, err = parseRoutes(a.Routes, p.addrs); err != nil {
		return nil, err
	}
	if p.dns, err = parseDNS(a.DNSServerList, a.DNSSuffix); err != nil {
		return nil, err
	}
	return p, nil
}

// parseIPConfig turns an address and prefix length into the address with
// its subnet mask.
func parseIPConfig(c protocol.IPConfig) (*net.IPNet, error) {
	ip := net.ParseIP(c.IPAddress)
	if ip == nil || ip.IsUnspecified() || ip.IsMulticast() {
		return nil, fmt.Errorf("IP address %q: want a unicast IPv4 or IPv6 address: %w", c.IPAddress, errdefs.ErrInvalidArgument)
	}
	bits := 128
	if v4 := ip.To4(); v4 != nil {
		ip, bits = v4, 32
	}
	if c.PrefixLength == 0 || int(c.PrefixLength) > bits {
		return nil, fmt.Errorf("IP address %s/%d: want a prefix length of 1-%d: %w", c.IPAddress, c.PrefixLength, bits, errdefs.ErrInvalidArgument)
	}
	return &net.IPNet{IP: ip, Mask: net.CIDRMask(int(c.PrefixLength), bits)}, nil
}

// parseRoutes validates routes. A DestinationPrefix that is empty or all
// zeros (0.0.0.0/0, ::/0) is the default route via NextHop. A gateway
// outside every configured subnet first gets an on-link host route, so the
// kernel accepts a route through it.
func parseRoutes(rs []protocol.Route, addrs []*net.IPNet) ([]route, error) {
	var out, onLink []route
	seen := map[string]bool{}
	for _, r := range rs {
		var gw net.IP
		if r.NextHop != "" {
			if gw = net.ParseIP(r.NextHop); gw == nil || gw.IsUnspecified() || gw.IsMulticast() {
				return nil, fmt.Errorf("route next hop %q: want a unicast IP address: %w", r.NextHop, errdefs.ErrInvalidArgument)
			}
			if v4 := gw.To4(); v4 != nil {
				gw = v4
			}
		}
		var dst *net.IPNet
		if r.DestinationPrefix != "" {
			_, n, err := net.ParseCIDR(r.DestinationPrefix)
			if err != nil {
				return nil, fmt.Errorf("route destination %q: want a CIDR prefix: %v: %w", r.DestinationPrefix, err, errdefs.ErrInvalidArgument)
			}
			if ones, _ := n.Mask.Size(); ones > 0 {
				dst = n
			} else if gw != nil && (n.IP.To4() != nil) != (gw.To4() != nil) {
				return nil, fmt.Errorf("default route %s via %s: address families differ: %w", r.DestinationPrefix, r.NextHop, errdefs.ErrInvalidArgument)
			}
		}
		switch {
		case dst == nil && gw == nil:
			return nil, fmt.Errorf("default route without a next hop: %w", errdefs.ErrInvalidArgument)
		case dst != nil && gw != nil && (dst.IP.To4() != nil) != (gw.To4() != nil):
			return nil, fmt.Errorf("route %s via %s: address families differ: %w", r.DestinationPrefix, r.NextHop, errdefs.ErrInvalidArgument)
		}
		if gw != nil && !inSubnets(gw, addrs) && !seen[gw.String()] {
			seen[gw.String()] = true
			onLink = append(onLink, route{dst: hostPrefix(gw)})
		}
		out = append(out, route{dst: dst, gw: gw, metric: int(r.Metric)})
	}
	return append(onLink, out...), nil
}

func inSubnets(ip net.IP, addrs []*net.IPNet) bool {
	for _, a := range addrs {
		if (&net.IPNet{IP: a.IP.Mask(a.Mask), Mask: a.Mask}).Contains(ip) {
			return true
		}
	}
	return false
}

// hostPrefix is ip/32 (or /128).
func hostPrefix(ip net.IP) *net.IPNet {
	bits := 128
	if ip.To4() != nil {
		bits = 32
	}
	return &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)}
}
