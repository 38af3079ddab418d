package cnitest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/uvmgcs/gcs/internal/netnsrun"
)

// PluginDirs are where CNI plugins are looked for: Debian's
// containernetworking-plugins, then the upstream default.
var PluginDirs = []string{"/usr/lib/cni", "/opt/cni/bin"}

// Missing says why CNI tests cannot run here, or "".
func Missing() string {
	if os.Geteuid() != 0 {
		return "CNI tests need root"
	}
	for _, p := range []string{"bridge", "host-local", "portmap", "loopback"} {
		if !havePlugin(p) {
			return fmt.Sprintf("CNI plugin %s is not in %v (apt-get install containernetworking-plugins; `make deps` does)", p, PluginDirs)
		}
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		return "iptables is missing (portmap needs it; containernetworking-plugins depends on it)"
	}
	return ""
}

func havePlugin(name string) bool {
	for _, d := range PluginDirs {
		if st, err := os.Stat(filepath.Join(d, name)); err == nil && st.Mode().IsRegular() {
			return true
		}
	}
	return false
}

// suffix is a random name part, so that concurrent runs cannot collide.
func suffix() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// NewNetNS creates a network namespace bound at /var/run/netns/<prefix>-<random>
// with its loopback up, as `ip netns add` does, and removes it when the
// test ends. It returns the path.
func NewNetNS(tb testing.TB, prefix string) string {
	tb.Helper()
	name := prefix + "-" + suffix()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		ns, err := netns.NewNamed(name) // leaves this thread in ns
		if err == nil {
			ns.Close()
		}
		if serr := netns.Set(orig); serr != nil {
			errc <- fmt.Errorf("return to the test's network namespace: %w", serr)
			return // the thread dies locked
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	if err := <-errc; err != nil {
		tb.Fatalf("create network namespace %s: %v", name, err)
	}
	path := filepath.Join("/var/run/netns", name)
	tb.Cleanup(func() {
		if err := netns.DeleteNamed(name); err != nil {
			tb.Errorf("delete network namespace %s: %v", name, err)
		}
	})
	Do(tb, path, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(lo)
	})
	return path
}

// Do runs fn inside the network namespace at path and fails the test on
// its error.
func Do(tb testing.TB, path string, fn func() error) {
	tb.Helper()
	if err := netnsrun.Run(path, fn); err != nil {
		tb.Fatalf("in %s: %v", path, err)
	}
}

// Network is a CNI bridge network in a namespace standing in for a node.
type Network struct {
	HostNS  string // the namespace of the bridge and of portmap's rules
	Name    string
	Bridge  string
	Subnet  *net.IPNet
	Gateway net.IP // the bridge's address
	MTU     int

	cni  *libcni.CNIConfig
	list *libcni.NetworkConfigList
	lo   *libcni.NetworkConfig
}

// Options shape a Network.
type Options struct {
	MTU int // the pods' MTU; 1500 if 0
}

// NewNetwork makes a bridge network (host-local IPAM over 10.99.0.0/24,
// a default route via the bridge) with portmap chained after it, in a
// fresh namespace. It skips the test, loudly, when plugins are missing.
func NewNetwork(tb testing.TB, o Options) *Network {
	tb.Helper()
	if why := Missing(); why != "" {
		tb.Skip("SKIP (loud): " + why)
	}
	if o.MTU == 0 {
		o.MTU = 1500
	}
	_, subnet, _ := net.ParseCIDR("10.99.0.0/24")
	n := &Network{
		HostNS:  NewNetNS(tb, "uvmgcs-node"),
		Name:    "uvmgcs-" + suffix(),
		Bridge:  "cni-uvm0",
		Subnet:  subnet,
		Gateway: net.IPv4(10, 99, 0, 1).To4(),
		MTU:     o.MTU,
	}
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       n.Name,
		"plugins": []any{
			map[string]any{
				"type": "bridge", "bridge": n.Bridge, "isGateway": true, "ipMasq": false, "mtu": o.MTU,
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{{{"subnet": subnet.String(), "gateway": n.Gateway.String()}}},
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
					"dataDir": tb.TempDir(),
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	b, _ := json.Marshal(conf)
	var err error
	if n.list, err = libcni.ConfListFromBytes(b); err != nil {
		tb.Fatal(err)
	}
	if n.lo, err = libcni.ConfFromBytes([]byte(`{"cniVersion":"1.0.0","name":"cni-loopback","type":"loopback"}`)); err != nil {
		tb.Fatal(err)
	}
	n.cni = libcni.NewCNIConfigWithCacheDir(PluginDirs, tb.TempDir(), nil)
	return n
}

// PortMapping is portmap's runtime configuration of one port.
type PortMapping struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
}

// Pod is a pod network namespace CNI has set up.
type Pod struct {
	NetNS string
	IP    net.IP
}

// AddPod makes a pod namespace and runs CNI ADD for it as CRI does (the
// loopback network, then the network list with the port mappings), from
// the network's host namespace. The test's end runs CNI DEL and removes the
// namespace.
func (n *Network) AddPod(tb testing.TB, ports ...PortMapping) *Pod {
	tb.Helper()
	p := &Pod{NetNS: NewNetNS(tb, "uvmgcs-pod")}
	rt := &libcni.RuntimeConf{
		ContainerID: "pod-" + suffix(), NetNS: p.NetNS, IfName: "eth0",
		CapabilityArgs: map[string]any{"portMappings": ports},
	}
	lort := &libcni.RuntimeConf{ContainerID: rt.ContainerID, NetNS: p.NetNS, IfName: "lo"}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var res *current.Result
	// The plugins are forked from a thread in the host namespace and run
	// there: the bridge, the veth's host end and the NAT rules go there.
	Do(tb, n.HostNS, func() error {
		if _, err := n.cni.AddNetwork(ctx, n.lo, lort); err != nil {
			return fmt.Errorf("CNI ADD loopback: %w", err)
		}
		r, err := n.cni.AddNetworkList(ctx, n.list, rt)
		if err != nil {
			return fmt.Errorf("CNI ADD %s: %w", n.Name, err)
		}
		res, err = current.NewResultFromResult(r)
		return err
	})
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := netnsrun.Run(n.HostNS, func() error {
			return n.cni.DelNetworkList(ctx, n.list, rt)
		}); err != nil {
			tb.Errorf("CNI DEL %s: %v", n.Name, err)
		}
	})
	for _, ip := range res.IPs {
		if ip.Address.IP.To4() != nil {
			p.IP = ip.Address.IP.To4()
		}
	}
	if p.IP == nil {
		tb.Fatalf("CNI ADD gave no IPv4 address: %+v", res)
	}
	return p
}

// Dial connects to addr from inside the namespace at nsPath.
func Dial(tb testing.TB, nsPath, network, addr string, timeout time.Duration) (net.Conn, error) {
	tb.Helper()
	var c net.Conn
	err := netnsrun.Run(nsPath, func() error {
		var err error
		// The socket is made on this thread, in the namespace; it stays
		// there whichever thread uses it later.
		c, err = net.DialTimeout(network, addr, timeout)
		return err
	})
	return c, err
}

// Listen listens on addr inside the namespace at nsPath.
func Listen(tb testing.TB, nsPath, network, addr string) net.Listener {
	tb.Helper()
	var l net.Listener
	Do(tb, nsPath, func() error {
		var err error
		l, err = net.Listen(network, addr)
		return err
	})
	tb.Cleanup(func() { l.Close() })
	return l
}

// Plumbing describes what a pod namespace holds beyond CNI's own: tap
// devices, ingress qdiscs and their filters. Empty means clean.
func Plumbing(tb testing.TB, nsPath string) []string {
	tb.Helper()
	var found []string
	Do(tb, nsPath, func() error {
		links, err := netlink.LinkList()
		if err != nil {
			return err
		}
		for _, l := range links {
			name := l.Attrs().Name
			if l.Type() == "tuntap" {
				found = append(found, "tap "+name)
			}
			qs, err := netlink.QdiscList(l)
			if err != nil {
				return err
			}
			for _, q := range qs {
				if q.Type() == "ingress" {
					found = append(found, "ingress qdisc on "+name)
				}
			}
			fs, err := netlink.FilterList(l, netlink.HANDLE_MIN_INGRESS)
			if err != nil {
				continue // no ingress qdisc to list filters of
			}
			for _, f := range fs {
				found = append(found, fmt.Sprintf("%s filter on %s", f.Type(), name))
			}
		}
		return nil
	})
	return found
}
