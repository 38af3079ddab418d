package network

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/uvmgcs/gcs/protocol"
)

// testEnv is a Manager whose root namespace is one the test made, so
// nothing of this host's network is touched.
type testEnv struct {
	m    *Manager
	dir  string
	root netns.NsHandle
	h    *netlink.Handle // in root
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIP (loud): network namespaces need root")
	}
}

// newNetNS returns a new, empty network namespace, freed when the test
// ends (with every interface in it).
func newNetNS(t *testing.T) netns.NsHandle {
	t.Helper()
	type result struct {
		h   netns.NsHandle
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// Never unlocked: the thread leaves with this goroutine.
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

func newTestEnv(t *testing.T, cfg Config) *testEnv {
	t.Helper()
	needRoot(t)
	root := newNetNS(t)
	h, err := netlink.NewHandleAt(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	dir := t.TempDir()
	// Registered after TempDir, so it runs first: no mount may be left
	// for TempDir's removal to trip on.
	t.Cleanup(func() { unmountUnder(t, dir) })
	cfg.Dir = filepath.Join(dir, "netns")
	cfg.RootNamespace = fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), int(root))
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	return &testEnv{m: m, dir: cfg.Dir, root: root, h: h}
}

// unmountUnder detaches every mount below dir that a failed test left.
func unmountUnder(t *testing.T, dir string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			t.Errorf("mount %s left behind", fields[4])
			unix.Unmount(fields[4], unix.MNT_DETACH)
		}
	}
}

// veth makes a veth pair in the test's root namespace and returns the
// ends; the second is the one handed to the Manager.
func (e *testEnv) veth(t *testing.T) (peer, adapter netlink.Link) {
	t.Helper()
	base := fmt.Sprintf("uvt%06x", rand.IntN(1<<24))
	err := e.h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: base + "p"}, PeerName: base + "a"})
	if err != nil {
		t.Fatalf("add veth: %v", err)
	}
	peer, err = e.h.LinkByName(base + "p")
	if err != nil {
		t.Fatal(err)
	}
	adapter, err = e.h.LinkByName(base + "a")
	if err != nil {
		t.Fatal(err)
	}
	return peer, adapter
}

func newID() string {
	return fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", rand.Uint32(), rand.IntN(1<<16), rand.IntN(1<<12), rand.IntN(1<<12), rand.Int64N(1<<48))
}

// inNSLink finds the interface with mac in namespace path.
func inNSLink(t *testing.T, path string, mac net.HardwareAddr, fn func(h *netlink.Handle, l netlink.Link)) {
	t.Helper()
	err := inNamespace(path, func(h *netlink.Handle) error {
		links, err := h.LinkList()
		if err != nil {
			return err
		}
		l := byMAC(links, mac)
		if l == nil {
			return fmt.Errorf("no interface with MAC %s in %s", mac, path)
		}
		fn(h, l)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestAdapterAddRemove(t *testing.T) {
	e := newTestEnv(t, Config{})
	ctx := context.Background()
	_, ad := e.veth(t)
	mac := ad.Attrs().HardwareAddr
	id := newID()
	a := protocol.NetworkAdapter{
		NamespaceID:   strings.ToUpper(id),
		ID:            newID(),
		MacAddress:    strings.ToUpper(strings.ReplaceAll(mac.String(), ":", "-")),
		DNSServerList: "10.50.0.1",
		DNSSuffix:     "pod.example",
		EncapOverhead: 100,
		IPConfigs:     []protocol.IPConfig{{IPAddress: "10.50.0.2", PrefixLength: 24}},
		Routes: []protocol.Route{
			{NextHop: "10.50.0.1", DestinationPrefix: "0.0.0.0/0", Metric: 5},
			{NextHop: "10.99.0.1", DestinationPrefix: "10.200.0.0/16"},
		},
	}
	if err := e.m.AddAdapter(ctx, &a); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(e.dir, id)
	inNSLink(t, path, mac, func(h *netlink.Handle, l netlink.Link) {
		if l.Attrs().MTU != ad.Attrs().MTU-100 || l.Attrs().Flags&net.FlagUp == 0 {
			t.Errorf("MTU %d flags %v", l.Attrs().MTU, l.Attrs().Flags)
		}
		addrs, _ := h.AddrList(l, netlink.FAMILY_V4)
		if len(addrs) != 1 || addrs[0].IPNet.String() != "10.50.0.2/24" {
			t.Errorf("addresses %v", addrs)
		}
		routes, _ := h.RouteList(l, netlink.FAMILY_V4)
		var got []string
		for _, r := range routes {
			dst := describe(r.Dst)
			if r.Dst != nil && r.Dst.IP.IsUnspecified() {
				dst = "default"
			}
			got = append(got, fmt.Sprintf("%s via %v metric %d", dst, r.Gw, r.Priority))
		}
		s := strings.Join(got, "; ")
		for _, want := range []string{"default via 10.50.0.1 metric 5", "10.99.0.1/32 via <nil>", "10.200.0.0/16 via 10.99.0.1"} {
			if !strings.Contains(s, want) {
				t.Errorf("routes %q lack %q", s, want)
			}
		}
	})
	if _, err := e.h.LinkByName(ad.Attrs().Name); err == nil {
		t.Errorf("%s is still in the root namespace", ad.Attrs().Name)
	}
	if rc, ok := e.m.ResolvConf(id); !ok || string(rc) != "search pod.example\nnameserver 10.50.0.1\n" {
		t.Errorf("resolv.conf %q %v", rc, ok)
	}
	if b, err := os.ReadFile(path + ".resolv.conf"); err != nil || !strings.Contains(string(b), "nameserver 10.50.0.1") {
		t.Errorf("resolv.conf file %q %v", b, err)
	}
	if b, err := os.ReadFile(path + ".hosts"); err != nil || !strings.Contains(string(b), "localhost") {
		t.Errorf("hosts file %q %v", b, err)
	}

	// The same adapter again is refused; the namespace with it cannot go.
	if err := e.m.AddAdapter(ctx, &a); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("second add: %v", err)
	}
	if err := e.m.RemoveNamespace(ctx, id); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("remove namespace with an adapter: %v", err)
	}

	// Remove by ID alone (as hcsshim sends it): back, down, old MTU, and
	// the namespace is gone with its last adapter.
	if err := e.m.RemoveAdapter(ctx, &protocol.NetworkAdapter{NamespaceID: id, ID: a.ID}); err != nil {
		t.Fatal(err)
	}
	back, err := e.h.LinkByName(ad.Attrs().Name)
	if err != nil {
		t.Fatalf("not back in the root namespace: %v", err)
	}
	if back.Attrs().Flags&net.FlagUp != 0 || back.Attrs().MTU != ad.Attrs().MTU {
		t.Errorf("back: flags %v MTU %d", back.Attrs().Flags, back.Attrs().MTU)
	}
	for _, p := range []string{path, path + ".resolv.conf", path + ".hosts"} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left: %v", p, err)
		}
	}
	// Removing again, or a namespace that is gone, is success.
	if err := e.m.RemoveAdapter(ctx, &protocol.NetworkAdapter{NamespaceID: id, ID: a.ID}); err != nil {
		t.Errorf("second remove: %v", err)
	}
	if err := e.m.RemoveNamespace(ctx, id); err != nil {
		t.Errorf("remove a gone namespace: %v", err)
	}
}

func TestNamespaceOrderAndUse(t *testing.T) {
	e := newTestEnv(t, Config{})
	ctx := context.Background()
	id := newID()
	// A container asks first: the namespace exists, with lo up.
	path, err := e.m.NamespacePath(strings.ToUpper(id))
	if err != nil || path != filepath.Join(e.dir, id) {
		t.Fatalf("%q %v", path, err)
	}
	err = inNamespace(path, func(h *netlink.Handle) error {
		lo, err := h.LinkByName("lo")
		if err == nil && lo.Attrs().Flags&net.FlagUp == 0 {
			err = errors.New("lo is down")
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := e.m.ResolvConf(id); ok {
		t.Error("resolv.conf without DNS settings")
	}
	// Explicit Add of an existing namespace is fine; an adapter joins it.
	if err := e.m.AddNamespace(ctx, id); err != nil {
		t.Fatal(err)
	}
	_, ad := e.veth(t)
	a := protocol.NetworkAdapter{NamespaceID: id, MacAddress: ad.Attrs().HardwareAddr.String(),
		IPConfigs: []protocol.IPConfig{{IPAddress: "fd00::2", PrefixLength: 64}}}
	if err := e.m.AddAdapter(ctx, &a); err != nil {
		t.Fatal(err)
	}
	// A process in the namespace keeps it after its last adapter leaves.
	hold := holdNamespace(t, path)
	if err := e.m.RemoveAdapter(ctx, &protocol.NetworkAdapter{NamespaceID: id, MacAddress: a.MacAddress}); err != nil {
		t.Fatal(err)
	}
	if !isNamespace(path) {
		t.Fatal("namespace deleted while a process is in it")
	}
	hold()
	if err := e.m.RemoveNamespace(ctx, id); err != nil || isNamespace(path) {
		t.Fatalf("remove namespace: %v, mounted %v", err, isNamespace(path))
	}
}

// holdNamespace runs a process in the namespace at path until the returned
// function is called.
func holdNamespace(t *testing.T, path string) func() {
	t.Helper()
	ns, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	var p *os.Process
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread leaves in ns
		if err := netns.Set(ns); err != nil {
			errc <- err
			return
		}
		var err error
		p, err = os.StartProcess("/bin/sleep", []string{"sleep", "60"}, &os.ProcAttr{})
		errc <- err
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	done := false
	stop := func() {
		if !done {
			done = true
			p.Kill()
			p.Wait()
		}
	}
	t.Cleanup(stop)
	return stop
}

func TestAddFailuresLeaveNothing(t *testing.T) {
	e := newTestEnv(t, Config{LinkTimeout: 200 * time.Millisecond, DHCPTimeout: time.Second, DHCPCommand: []string{"/bin/false"}})
	ctx := context.Background()
	id := newID()
	err := e.m.AddAdapter(ctx, &protocol.NetworkAdapter{NamespaceID: id, MacAddress: "02-00-00-00-00-01",
		IPConfigs: []protocol.IPConfig{{IPAddress: "10.0.0.2", PrefixLength: 24}}})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "02:00:00:00:00:01") {
		t.Fatalf("unknown MAC: %v", err)
	}
	// Failures once the interface is found: it goes back, and the
	// namespace the add created goes.
	_, ad := e.veth(t)
	a := protocol.NetworkAdapter{NamespaceID: id, MacAddress: ad.Attrs().HardwareAddr.String(), EncapOverhead: 1480}
	if err := e.m.AddAdapter(ctx, &a); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("MTU below 68: %v", err)
	}
	a.EncapOverhead = 0 // no IP configuration: DHCP, which fails here
	if err := e.m.AddAdapter(ctx, &a); err == nil {
		t.Fatal("failed DHCP: no error")
	}
	if _, err := e.h.LinkByName(ad.Attrs().Name); err != nil {
		t.Errorf("adapter not back: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.dir, id)); !os.IsNotExist(err) {
		t.Errorf("namespace left: %v", err)
	}
}
