package test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/uvmgcs/gcs/host/hostmode"
	"github.com/uvmgcs/gcs/protocol"
)

// netAgent is a container agent started inside a network namespace the
// test made: its "root" namespace, where the test's veth pairs and bridges
// live. Nothing of this host's own network is seen or changed; when the
// test ends the agent is gone, then the namespace with all in it.
type netAgent struct {
	*ctrAgent
	root netns.NsHandle
	h    *netlink.Handle // in root
}

func startNetAgent(t *testing.T) *netAgent {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIP (loud): network namespaces need root")
	}
	root := newTestNetNS(t) // its cleanup runs after the agent's
	h, err := netlink.NewHandleAt(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	var a *ctrAgent
	inNetNS(t, root, func() {
		a = startContainerAgentArgs(t, "-network-link-timeout", "1s")
	})
	// The agent must be in the test's namespace, not this host's.
	var want, got unix.Stat_t
	if unix.Fstat(int(root), &want) != nil || unix.Stat(fmt.Sprintf("/proc/%d/ns/net", a.Pid()), &got) != nil || want.Ino != got.Ino {
		t.Fatal("the agent is not in the test's network namespace")
	}
	return &netAgent{ctrAgent: a, root: root, h: h}
}

// newTestNetNS returns a new, empty network namespace, closed when the
// test ends.
func newTestNetNS(t *testing.T) netns.NsHandle {
	t.Helper()
	type result struct {
		h   netns.NsHandle
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// Never unlocked: the thread, now in the new namespace, ends
		// with this goroutine.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ch <- result{err: err}
			return
		}
		h, err := netns.Get()
		ch <- result{h, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("new network namespace: %v", r.err)
	}
	t.Cleanup(func() { r.h.Close() })
	return r.h
}

// inNetNS runs fn on this goroutine's thread switched into ns, so the
// processes fn forks start there.
func inNetNS(t *testing.T, ns netns.NsHandle, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer func() {
		// A thread that cannot go back stays locked and ends with the
		// test's goroutine.
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
	}()
	fn()
}

// startContainerAgentArgs is startContainerAgent with extra agent flags.
func startContainerAgentArgs(t *testing.T, args ...string) *ctrAgent {
	t.Helper()
	state := t.TempDir()
	rootfs := filepath.Join(state, "layers", "busybox")
	buildBusyboxRootfs(t, rootfs)
	cg := fmt.Sprintf("/gcs-test-%d-%d", os.Getpid(), cgroupSeq.Add(1))
	t.Cleanup(func() { removeCgroupTree(t, cg) })
	a := startAgentWith(t, hostmode.Config{StateRoot: state, Args: append([]string{"-cgroup-parent", cg}, args...)})
	return &ctrAgent{agent: a, state: state, rootfs: rootfs, cgroup: cg}
}

// veth makes a veth pair in the agent's root namespace; the adapter end is
// the one to hand to the agent. Both are deleted when the test ends
// (wherever the agent left them, they also go with the namespaces).
func (n *netAgent) veth(t *testing.T) (peer, adapter netlink.Link) {
	t.Helper()
	base := fmt.Sprintf("uvt%06x", rand.IntN(1<<24))
	if err := n.h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: base + "p"}, PeerName: base + "a"}); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	t.Cleanup(func() {
		if l, err := n.h.LinkByName(base + "p"); err == nil {
			n.h.LinkDel(l)
		}
	})
	var err error
	if peer, err = n.h.LinkByName(base + "p"); err != nil {
		t.Fatal(err)
	}
	if adapter, err = n.h.LinkByName(base + "a"); err != nil {
		t.Fatal(err)
	}
	return peer, adapter
}

// nsPath is where the agent keeps namespace id, seen from this host.
func (n *netAgent) nsPath(id string) string {
	return fmt.Sprintf("/proc/%d/root%s", n.Pid(), filepath.Join(n.state, "netns", strings.ToLower(id)))
}

// inPod runs fn with a netlink handle in the agent's namespace id.
func (n *netAgent) inPod(t *testing.T, id string, fn func(h *netlink.Handle)) {
	t.Helper()
	ns, err := netns.GetFromPath(n.nsPath(id))
	if err != nil {
		t.Fatalf("open the agent's namespace %s: %v", id, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	fn(h)
}

func macOf(l netlink.Link) string {
	return strings.ToUpper(strings.ReplaceAll(l.Attrs().HardwareAddr.String(), ":", "-"))
}

func byMAC(t *testing.T, h *netlink.Handle, mac net.HardwareAddr) netlink.Link {
	t.Helper()
	links, err := h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if l.Attrs().HardwareAddr.String() == mac.String() {
			return l
		}
	}
	return nil
}

func TestNetworkAdapterInPodNamespace(t *testing.T) {
	n := startNetAgent(t)
	ctx := context.Background()
	_, ad := n.veth(t)
	mac := ad.Attrs().HardwareAddr
	id := strings.ToUpper(uuid.NewString())
	a := protocol.NetworkAdapter{
		NamespaceID:   id,
		ID:            uuid.NewString(),
		MacAddress:    macOf(ad),
		DNSServerList: "10.81.0.1",
		DNSSuffix:     "pod.example",
		EncapOverhead: 60,
		IPConfigs:     []protocol.IPConfig{{IPAddress: "10.81.0.2", PrefixLength: 24}},
		Routes: []protocol.Route{
			{NextHop: "10.81.0.1", DestinationPrefix: "0.0.0.0/0"},
			{NextHop: "10.82.0.1", DestinationPrefix: "10.200.0.0/16", Metric: 9},
		},
	}
	if err := n.gc.AddNetworkAdapter(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := n.h.LinkByName(ad.Attrs().Name); err == nil {
		t.Error("the adapter is still in the agent's root namespace")
	}
	n.inPod(t, id, func(h *netlink.Handle) {
		l := byMAC(t, h, mac)
		if l == nil {
			t.Fatal("the adapter is not in the pod's namespace")
		}
		if l.Attrs().MTU != ad.Attrs().MTU-60 || l.Attrs().Flags&net.FlagUp == 0 {
			t.Errorf("MTU %d (want %d), flags %v", l.Attrs().MTU, ad.Attrs().MTU-60, l.Attrs().Flags)
		}
		addrs, _ := h.AddrList(l, netlink.FAMILY_V4)
		if len(addrs) != 1 || addrs[0].IPNet.String() != "10.81.0.2/24" {
			t.Errorf("addresses %v", addrs)
		}
		routes, _ := h.RouteList(l, netlink.FAMILY_V4)
		var got []string
		for _, r := range routes {
			got = append(got, fmt.Sprintf("%v via %v metric %d", r.Dst, r.Gw, r.Priority))
		}
		s := strings.Join(got, "; ")
		for _, want := range []string{"0.0.0.0/0 via 10.81.0.1", "10.82.0.1/32 via <nil>", "10.200.0.0/16 via 10.82.0.1 metric 9"} {
			if !strings.Contains(s, want) {
				t.Errorf("routes %q lack %q", s, want)
			}
		}
	})
	if err := n.gc.RemoveNetworkNamespace(ctx, id); !isError(err, protocol.HrVmcomputeInvalidState) {
		t.Errorf("remove a namespace holding an adapter: %v", err)
	}
	if err := n.gc.RemoveNetworkAdapter(ctx, protocol.NetworkAdapter{NamespaceID: id, ID: a.ID}); err != nil {
		t.Fatal(err)
	}
	back, err := n.h.LinkByName(ad.Attrs().Name)
	if err != nil {
		t.Fatalf("the adapter is not back: %v", err)
	}
	if back.Attrs().Flags&net.FlagUp != 0 {
		t.Error("the adapter came back up")
	}
	if _, err := os.Stat(n.nsPath(id)); !os.IsNotExist(err) {
		t.Errorf("the namespace outlived its last adapter: %v", err)
	}
}

// podSpec is a spec for a container in network namespace id.
func (n *netAgent) podSpec(id string, args ...string) *specs.Spec {
	s := n.spec(args...)
	s.Windows = &specs.Windows{Network: &specs.WindowsNetwork{NetworkNamespace: id}}
	return s
}

// bridge makes a Linux bridge in the agent's root namespace and returns
// adapters whose peers are its ports.
func (n *netAgent) bridge(t *testing.T, ports int) []netlink.Link {
	t.Helper()
	name := fmt.Sprintf("uvtbr%05x", rand.IntN(1<<20))
	if err := n.h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}); err != nil {
		t.Fatalf("add bridge: %v", err)
	}
	t.Cleanup(func() {
		if l, err := n.h.LinkByName(name); err == nil {
			n.h.LinkDel(l)
		}
	})
	br, err := n.h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	var ads []netlink.Link
	for range ports {
		peer, ad := n.veth(t)
		if err := n.h.LinkSetMaster(peer, br); err != nil {
			t.Fatal(err)
		}
		if err := n.h.LinkSetUp(peer); err != nil {
			t.Fatal(err)
		}
		ads = append(ads, ad)
	}
	if err := n.h.LinkSetUp(br); err != nil {
		t.Fatal(err)
	}
	return ads
}

func TestNetworkPodsShareAndTalk(t *testing.T) {
	n := startNetAgent(t)
	ctx := context.Background()
	ads := n.bridge(t, 2)
	podA, podB := uuid.NewString(), strings.ToUpper(uuid.NewString())
	for i, p := range []struct{ ns, ip string }{{podA, "10.91.0.2"}, {podB, "10.91.0.3"}} {
		err := n.gc.AddNetworkAdapter(ctx, protocol.NetworkAdapter{
			NamespaceID: p.ns, ID: uuid.NewString(), MacAddress: macOf(ads[i]),
			DNSServerList: "10.91.0.1, 10.91.0.254", DNSSuffix: "pod.example,example",
			IPConfigs: []protocol.IPConfig{{IPAddress: p.ip, PrefixLength: 24}},
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	// Pod A: a sandbox and a workload, sharing its network namespace and
	// its /etc files.
	sb := n.podSpec(podA, "sleep", "100")
	sb.Hostname = "pod-a"
	sb.Annotations = map[string]string{"io.kubernetes.cri.container-type": "sandbox"}
	sandbox, _ := n.started(t, sb, false)
	w := n.podSpec(podA, "sh", "-c", "echo pong | nc -l -p 8080")
	w.Annotations = map[string]string{"io.kubernetes.cri.container-type": "container", "io.kubernetes.cri.sandbox-id": sandbox.ID()}
	server, serverInit := n.started(t, w, false)
	wantResolv := "search pod.example example\nnameserver 10.91.0.1\nnameserver 10.91.0.254\n"
	for _, f := range []string{"/etc/resolv.conf", "/etc/hosts"} {
		rs, rw := execIn(t, sandbox, "cat", f), execIn(t, server, "cat", f)
		if rs.code != 0 || rs.stdout != rw.stdout {
			t.Errorf("%s differs in one pod: sandbox %q, workload %q", f, rs.stdout, rw.stdout)
		}
		if f == "/etc/resolv.conf" && rs.stdout != wantResolv {
			t.Errorf("resolv.conf %q, want %q", rs.stdout, wantResolv)
		}
		if f == "/etc/hosts" && !strings.Contains(rs.stdout, "pod-a") {
			t.Errorf("hosts %q lacks the pod's hostname", rs.stdout)
		}
	}
	if r := execIn(t, server, "ip", "-o", "-4", "addr"); !strings.Contains(r.stdout, "10.91.0.2/24") {
		t.Errorf("pod A's addresses: %q", r.stdout)
	}

	// A container that names no namespace has only lo.
	lone, _ := n.started(t, n.spec("sleep", "100"), false)
	if r := execIn(t, lone, "cat", "/proc/net/dev"); strings.Count(r.stdout, ":") != 1 || !strings.Contains(r.stdout, "lo:") {
		t.Errorf("a container outside any pod sees %q", r.stdout)
	}

	// Pod B reaches pod A over the test's bridge.
	client, _ := n.started(t, n.podSpec(podB, "sleep", "100"), false)
	r := execIn(t, client, "sh", "-c", "for i in $(seq 50); do nc -w 2 10.91.0.2 8080 </dev/null && exit 0; sleep 0.2; done; exit 1")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "pong" {
		t.Fatalf("pod B to pod A over TCP: %+v", r)
	}
	if res := collect(t, serverInit); res.code != 0 {
		t.Errorf("pod A's server: %+v", res)
	}
}

func TestNetworkBadInputKeepsServing(t *testing.T) {
	n := startNetAgent(t)
	ctx := context.Background()
	id := uuid.NewString()
	ok := protocol.NetworkAdapter{NamespaceID: id, MacAddress: "02-55-00-00-00-01",
		IPConfigs: []protocol.IPConfig{{IPAddress: "10.93.0.2", PrefixLength: 24}}}
	domains := make([]string, 300)
	for i := range domains {
		domains[i] = fmt.Sprintf("d%d.example", i)
	}
	for _, tc := range []struct {
		name string
		edit func(a *protocol.NetworkAdapter)
		want protocol.HResult
	}{
		{"unknown MAC", func(a *protocol.NetworkAdapter) {}, protocol.HrVmcomputeTimeout},
		{"bad MAC", func(a *protocol.NetworkAdapter) { a.MacAddress = "02-55-00" }, protocol.HrInvalidArg},
		{"prefix length 33", func(a *protocol.NetworkAdapter) {
			a.IPConfigs = []protocol.IPConfig{{IPAddress: "10.93.0.2", PrefixLength: 33}}
		}, protocol.HrInvalidArg},
		{"bad route CIDR", func(a *protocol.NetworkAdapter) {
			a.Routes = []protocol.Route{{NextHop: "10.93.0.1", DestinationPrefix: "10.0.0.0/40"}}
		}, protocol.HrInvalidArg},
		{"300 search domains", func(a *protocol.NetworkAdapter) { a.DNSSuffix = strings.Join(domains, ",") }, protocol.HrInvalidArg},
		{"bad DNS server", func(a *protocol.NetworkAdapter) { a.DNSServerList = "10.93.0.1;rm -rf" }, protocol.HrInvalidArg},
		{"namespace id not a GUID", func(a *protocol.NetworkAdapter) { a.NamespaceID = "../../etc" }, protocol.HrInvalidArg},
	} {
		a := ok
		tc.edit(&a)
		start := time.Now()
		err := n.gc.AddNetworkAdapter(ctx, a)
		if !isError(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		t.Logf("%s: %v (%s)", tc.name, err, time.Since(start).Round(time.Millisecond))
	}
	if err := n.gc.RemoveNetworkAdapter(ctx, ok); err != nil {
		t.Errorf("remove an adapter never added: %v", err)
	}
	// A pod container whose hostname is no host name.
	bad := n.podSpec(id, "true")
	bad.Hostname = "pod/../../x"
	if _, err := n.gc.CreateContainer(ctx, "badhost", bad); !isError(err, protocol.HrInvalidArg) {
		t.Errorf("hostname with '/': %v", err)
	}
	if _, err := n.gc.CreateContainer(ctx, "badns", n.podSpec("not-a-guid", "true")); !isError(err, protocol.HrInvalidArg) {
		t.Errorf("spec naming a bad namespace id: %v", err)
	}

	// Still serving: a real adapter goes in, a container runs in its pod.
	_, ad := n.veth(t)
	ok.MacAddress = macOf(ad)
	if err := n.gc.AddNetworkAdapter(ctx, ok); err != nil {
		t.Fatal(err)
	}
	if _, r := n.run(t, n.podSpec(id, "ip", "-o", "-4", "addr")); !strings.Contains(r.stdout, "10.93.0.2/24") {
		t.Fatalf("after bad requests: %+v", r)
	}
	if err := n.gc.RemoveNetworkAdapter(ctx, ok); err != nil {
		t.Fatal(err)
	}
}
