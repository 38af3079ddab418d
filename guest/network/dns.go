package network

import (
	"bytes"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/uvmgcs/gcs/internal/names"
)

// Limits of a resolv.conf search list (glibc before 2.26, musl): more is
// silently dropped by some resolvers, so it is refused instead.
const (
	MaxSearchDomains = 6
	MaxSearchLength  = 256
	// MaxNameservers bounds the servers one namespace lists; resolvers use
	// the first three.
	MaxNameservers = 16
)

// dnsConfig is a namespace's resolver settings.
type dnsConfig struct {
	servers []net.IP
	search  []string
}

func (d dnsConfig) empty() bool { return len(d.servers) == 0 && len(d.search) == 0 }

// splitList splits a comma- or space-separated list.
func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
}

// parseDNS validates an adapter's DNSServerList and DNSSuffix.
func parseDNS(servers, suffix string) (dnsConfig, error) {
	var d dnsConfig
	for _, s := range splitList(servers) {
		ip := net.ParseIP(s)
		if ip == nil || ip.IsUnspecified() || ip.IsMulticast() {
			return d, fmt.Errorf("DNS server %q: want a unicast IP address: %w", s, errdefs.ErrInvalidArgument)
		}
		d.servers = append(d.servers, ip)
	}
	for _, s := range splitList(suffix) {
		if err := validDomain(s); err != nil {
			return d, err
		}
		d.search = append(d.search, s)
	}
	return d, d.check()
}

// check enforces the resolv.conf limits.
func (d dnsConfig) check() error {
	if len(d.servers) > MaxNameservers {
		return fmt.Errorf("%d DNS servers: at most %d: %w", len(d.servers), MaxNameservers, errdefs.ErrInvalidArgument)
	}
	if len(d.search) > MaxSearchDomains {
		return fmt.Errorf("%d DNS search domains: at most %d: %w", len(d.search), MaxSearchDomains, errdefs.ErrInvalidArgument)
	}
	if n := len(strings.Join(d.search, " ")); n > MaxSearchLength {
		return fmt.Errorf("DNS search list of %d characters: at most %d: %w", n, MaxSearchLength, errdefs.ErrInvalidArgument)
	}
	return nil
}

// merge is d followed by what o adds, without repeats.
func (d dnsConfig) merge(o dnsConfig) dnsConfig {
	out := dnsConfig{servers: slices.Clone(d.servers), search: slices.Clone(d.search)}
	for _, ip := range o.servers {
		if !slices.ContainsFunc(out.servers, ip.Equal) {
			out.servers = append(out.servers, ip)
		}
	}
	for _, s := range o.search {
		if !slices.ContainsFunc(out.search, func(t string) bool { return strings.EqualFold(s, t) }) {
			out.search = append(out.search, s)
		}
	}
	return out
}

// resolvConf renders d as a resolv.conf.
func (d dnsConfig) resolvConf() []byte {
	var b bytes.Buffer
	if len(d.search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(d.search, " "))
	}
	for _, ip := range d.servers {
		fmt.Fprintf(&b, "nameserver %s\n", ip)
	}
	return b.Bytes()
}

// validDomain accepts a DNS name of up to 253 characters (a trailing dot
// allowed).
func validDomain(s string) error {
	name := strings.TrimSuffix(s, ".")
	if !names.Domain(name) {
		return fmt.Errorf("DNS search domain %q: want a DNS name: %w", s, errdefs.ErrInvalidArgument)
	}
	return nil
}

// ValidHostname reports whether s is a host name the kernel and a hosts
// file take: RFC 1123 labels, at most 64 characters.
func ValidHostname(s string) bool {
	return names.Hostname(s)
}

// HostsFile is the boilerplate /etc/hosts of a namespace whose host is
// called hostname.
func HostsFile(hostname string) ([]byte, error) {
	if !ValidHostname(hostname) {
		return nil, fmt.Errorf("hostname %q: want RFC 1123 labels, at most 64 characters: %w", hostname, errdefs.ErrInvalidArgument)
	}
	return []byte("127.0.0.1\tlocalhost\n" +
		"::1\tlocalhost ip6-localhost ip6-loopback\n" +
		"fe00::0\tip6-localnet\n" +
		"ff00::0\tip6-mcastprefix\n" +
		"ff02::1\tip6-allnodes\n" +
		"ff02::2\tip6-allrouters\n" +
		"127.0.1.1\t" + hostname + "\n"), nil
}
