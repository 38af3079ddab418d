package podnet_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/uvmgcs/gcs/host/podnet"
	"github.com/uvmgcs/gcs/host/podnet/cnitest"
)

// guest stands in for a VM on the tap: a namespace with a tap of its own
// configured as the guest adapter would be, and a relay that copies frames
// between the two taps as QEMU's virtio-net does.
func guest(t *testing.T, ep *podnet.Endpoint) string {
	t.Helper()
	ns := cnitest.NewNetNS(t, "uvmgcs-guest")
	var file *os.File
	cnitest.Do(t, ns, func() error {
		tt := &netlink.Tuntap{
			LinkAttrs: netlink.LinkAttrs{Name: "eth0"},
			Mode:      netlink.TUNTAP_MODE_TAP, Flags: netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR,
			Queues: 1, NonPersist: true,
		}
		if err := netlink.LinkAdd(tt); err != nil {
			return err
		}
		file = tt.Fds[0]
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		c := ep.Config
		for _, step := range []error{netlink.LinkSetHardwareAddr(l, c.MAC), netlink.LinkSetMTU(l, c.MTU)} {
			if step != nil {
				return step
			}
		}
		for _, a := range c.Addrs {
			if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: a}); err != nil {
				return err
			}
		}
		if err := netlink.LinkSetUp(l); err != nil {
			return err
		}
		for _, r := range c.Routes {
			if err := netlink.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Dst: r.Dst, Gw: r.Gw, Priority: r.Metric}); err != nil {
				return fmt.Errorf("route %+v: %w", r, err)
			}
		}
		return nil
	})
	t.Cleanup(func() { file.Close() })
	go relay(file, ep.TapFile())
	go relay(ep.TapFile(), file)
	return ns
}

// relay copies frames (each read is one, behind its virtio-net header)
// until either side closes.
func relay(dst, src *os.File) {
	buf := make([]byte, 70<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		if _, err := dst.Write(buf[:n]); err != nil && !errors.Is(err, unix.EIO) {
			return
		}
	}
}

// serve answers every connection on l with a line.
func serve(l net.Listener, line string) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		fmt.Fprintln(c, line)
		c.Close()
	}
}

func get(t *testing.T, ns, addr string) string {
	t.Helper()
	c, err := cnitest.Dial(t, ns, "tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatalf("connect to %s: %v", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil && err != io.EOF {
		t.Fatalf("read from %s: %v", addr, err)
	}
	return strings.TrimSpace(line)
}

// TestSetup: a pod network from Debian's bridge, host-local and portmap
// plugins; Setup reports the veth's configuration, and a stand-in guest
// configured with it on the tap is reached from the node by the pod's IP
// and through a host port; Release leaves no tap, qdisc or filter.
func TestSetup(t *testing.T) {
	n := cnitest.NewNetwork(t, cnitest.Options{MTU: 1400})
	pod := n.AddPod(t, cnitest.PortMapping{HostPort: 18080, ContainerPort: 80, Protocol: "tcp"})
	ctx := context.Background()

	var veth netlink.Link
	cnitest.Do(t, pod.NetNS, func() (err error) { veth, err = netlink.LinkByName("eth0"); return err })
	ep, err := podnet.Setup(ctx, pod.NetNS, podnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ep.Release(ctx)
	if got := cnitest.Plumbing(t, pod.NetNS); len(got) != 5 {
		t.Errorf("after Setup the pod namespace holds %q, want a tap, two ingress qdiscs and two filters", got)
	}

	c := ep.Config
	if c.MAC.String() != veth.Attrs().HardwareAddr.String() || c.MTU != 1400 {
		t.Errorf("config MAC %s MTU %d, want the veth's %s and 1400", c.MAC, c.MTU, veth.Attrs().HardwareAddr)
	}
	a := c.Adapter("6f2b1c3e-0000-4000-8000-00000000abcd", "0d9c8a51-1111-4222-8333-444455556666", podnet.DNS{Servers: []string{"10.99.0.53"}})
	if len(a.IPConfigs) != 1 || a.IPConfigs[0].IPAddress != pod.IP.String() || a.IPConfigs[0].PrefixLength != 24 {
		t.Errorf("adapter addresses %+v, want %s/24", a.IPConfigs, pod.IP)
	}
	if len(a.Routes) != 1 || a.Routes[0].NextHop != "10.99.0.1" || a.Routes[0].DestinationPrefix != "0.0.0.0/0" {
		t.Errorf("adapter routes %+v, want the default route via 10.99.0.1", a.Routes)
	}
	if gws := c.Gateways(); len(gws) != 1 || !gws[0].Equal(n.Gateway) {
		t.Errorf("gateways %v, want %s", gws, n.Gateway)
	}
	if a.MacAddress != c.MAC.String() || a.DNSServerList != "10.99.0.53" {
		t.Errorf("adapter %+v", a)
	}

	g := guest(t, ep)
	go serve(cnitest.Listen(t, g, "tcp", ":80"), "hello from the guest")
	if got := get(t, n.HostNS, net.JoinHostPort(pod.IP.String(), "80")); got != "hello from the guest" {
		t.Errorf("by the pod IP: got %q", got)
	}
	if got := get(t, n.HostNS, net.JoinHostPort(n.Gateway.String(), "18080")); got != "hello from the guest" {
		t.Errorf("through host port 18080: got %q", got)
	}

	// A second Setup on the same namespace is refused and breaks nothing.
	if _, err := podnet.Setup(ctx, pod.NetNS, podnet.Options{Tap: "tap1_uvm"}); err == nil {
		t.Error("a second Setup of the namespace succeeded")
	}
	if got := get(t, n.HostNS, net.JoinHostPort(pod.IP.String(), "80")); got != "hello from the guest" {
		t.Errorf("after a refused second Setup: got %q", got)
	}

	if err := ep.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ep.Release(ctx); err != nil {
		t.Errorf("second Release: %v", err)
	}
	assertClean(t, pod.NetNS)
}

// assertClean checks that the pod namespace holds no tap, qdisc or filter
// of ours.
func assertClean(t *testing.T, ns string) {
	t.Helper()
	if left := cnitest.Plumbing(t, ns); len(left) > 0 {
		t.Errorf("left in the pod namespace: %q", left)
	}
}

// TestRelease: Release of a namespace that is gone succeeds, and Teardown
// by name undoes a Setup whose Endpoint was lost.
func TestRelease(t *testing.T) {
	n := cnitest.NewNetwork(t, cnitest.Options{})
	ctx := context.Background()

	pod := n.AddPod(t)
	ep, err := podnet.Setup(ctx, pod.NetNS, podnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ep.TapFile().Close() // as if the process that held it died ...
	if _, err := podnet.Setup(ctx, pod.NetNS, podnet.Options{}); err == nil {
		t.Error("Setup over an attached namespace succeeded")
	}
	if err := podnet.Teardown(ctx, pod.NetNS, podnet.Options{}); err != nil { // ... and a new one cleans up
		t.Fatal(err)
	}
	assertClean(t, pod.NetNS)

	if err := podnet.Teardown(ctx, "/var/run/netns/uvmgcs-no-such-ns", podnet.Options{}); err != nil {
		t.Errorf("Teardown of a namespace that is gone: %v", err)
	}
	notNS := t.TempDir() + "/ns"
	os.WriteFile(notNS, nil, 0o600)
	if err := podnet.Teardown(ctx, notNS, podnet.Options{}); err != nil {
		t.Errorf("Teardown of a plain file (an unmounted namespace): %v", err)
	}
}

// TestSetupErrors: clear errors, nothing left behind.
func TestSetupErrors(t *testing.T) {
	if why := cnitest.Missing(); why != "" {
		t.Skip("SKIP (loud): " + why)
	}
	ctx := context.Background()
	empty := cnitest.NewNetNS(t, "uvmgcs-empty")
	if _, err := podnet.Setup(ctx, empty, podnet.Options{}); err == nil || !strings.Contains(err.Error(), "eth0") {
		t.Errorf("Setup without eth0: %v", err)
	}
	for _, o := range []podnet.Options{{Tap: "a/b"}, {Tap: "waytoolongname0123"}, {Interface: "x", Tap: "x"}} {
		if _, err := podnet.Setup(ctx, empty, o); err == nil {
			t.Errorf("Setup with %+v succeeded", o)
		}
	}
	if _, err := podnet.Setup(ctx, "var/run/netns/relative", podnet.Options{}); err == nil {
		t.Error("Setup of a relative path succeeded")
	}
	if _, err := podnet.Setup(ctx, "/var/run/netns/uvmgcs-no-such-ns", podnet.Options{}); err == nil {
		t.Error("Setup of a missing namespace succeeded")
	}
	// A veth without an address: CNI has not run.
	cnitest.Do(t, empty, func() error {
		return netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "peer0"})
	})
	if _, err := podnet.Setup(ctx, empty, podnet.Options{}); err == nil || !strings.Contains(err.Error(), "no global address") {
		t.Errorf("Setup of an unconfigured eth0: %v", err)
	}
	cnitest.Do(t, empty, func() error {
		if _, err := netlink.LinkByName(podnet.DefaultTap); err == nil {
			t.Error("a failed Setup left its tap")
		}
		return nil
	})
}
