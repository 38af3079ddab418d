package vm

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/uvmgcs/gcs/host/podnet"
	"github.com/uvmgcs/gcs/host/podnet/cnitest"
	"github.com/uvmgcs/gcs/host/vm"
	"github.com/uvmgcs/gcs/protocol"
)

// httpGet fetches url from inside the network namespace at ns.
func httpGet(t *testing.T, ns, url string) string {
	t.Helper()
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return cnitest.Dial(t, ns, network, addr, 10*time.Second)
	}}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	resp, err := client.Get(url)
	// The server may still be starting in the guest.
	for deadline := time.Now().Add(30 * time.Second); errors.Is(err, syscall.ECONNREFUSED) && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		resp, err = client.Get(url)
	}
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %q %v", url, resp.Status, b, err)
	}
	return string(b)
}

// TestVMPodNetwork: a pod network made by Debian's CNI plugins, as
// containerd's CRI plugin makes one, attached to a running VM: the guest
// adapter has the pod's MAC, MTU, address, route and DNS; an HTTP server
// in the guest's pod namespace answers from the node's side of the bridge by
// the pod IP and through a portmap host port; after Release nothing is
// left in the pod namespace, in QEMU or in the guest.
func TestVMPodNetwork(t *testing.T) {
	n := cnitest.NewNetwork(t, cnitest.Options{MTU: 1400})
	pod := n.AddPod(t, cnitest.PortMapping{HostPort: 18080, ContainerPort: 80, Protocol: "tcp"})
	m := shared.get(t)
	gc := m.gc()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// An adapter the guest refuses fails the attach and leaves nothing.
	if _, err := podnet.Attach(ctx, gc, m.m, pod.NetNS, podnet.AttachOptions{DNS: podnet.DNS{Servers: []string{"not-an-address"}}}); err == nil {
		t.Fatal("attach with a DNS server that is no address succeeded")
	}
	assertNoPodNIC(t, m, pod.NetNS)

	t0 := time.Now()
	at, err := podnet.Attach(ctx, gc, m.m, pod.NetNS, podnet.AttachOptions{
		DNS: podnet.DNS{Servers: []string{"10.99.0.53"}, Search: []string{"pod.test"}},
	})
	if err != nil {
		t.Fatalf("attach: %v\nconsole:\n%s", err, m.console)
	}
	defer at.Release(ctx)
	t.Logf("attach: %v", time.Since(t0))
	mac := at.Adapter.MacAddress
	netdev := "tap-" + strings.ReplaceAll(mac, ":", "")
	if ids, err := m.m.Netdevs(ctx); err != nil || !slices.Contains(ids, netdev) {
		t.Fatalf("QEMU's netdevs %q (%v), want %s", ids, err, netdev)
	}

	// The server runs in the guest's pod namespace, as a pod's containers
	// would (TestVMNetwork shows a container joining one).
	inPod := `ns=$(awk '$3 == "nsfs" && $2 ~ /` + at.Adapter.NamespaceID + `$/ {print $2; exit}' /proc/mounts); [ -n "$ns" ] || exit 9; `
	srv, err := gc.CreateProcess(ctx, &protocol.ProcessParameters{CommandArgs: []string{"sh", "-c", inPod +
		"mkdir -p /tmp/www && echo hello from the pod >/tmp/www/index.html && head -c 4194304 /dev/urandom >/tmp/www/big && md5sum </tmp/www/big >/tmp/big.md5 && exec nsenter --net=$ns httpd -f -p 80 -h /tmp/www"}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		srv.Kill(ctx)
		srv.Wait()
		srv.Close()
	}()
	r := run(t, gc, "sh", "-c", inPod+"nsenter --net=$ns sh -c "+
		`'ip -o link; ip -o -4 addr show; ip -4 route'; cat $ns.resolv.conf`)
	t.Logf("the pod's network in the guest:\n%s", r.stdout)
	for _, want := range []string{" mtu 1400 ", "link/ether " + mac + " ", " " + pod.IP.String() + "/24 ", "default via 10.99.0.1 ", "nameserver 10.99.0.53", "search pod.test"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("the pod's network in the guest lacks %q:\n%s%s", want, r.stdout, r.stderr)
		}
	}

	// From the node's side of the bridge: by the pod IP, and through the
	// host port portmap set up on the node.
	for _, url := range []string{"http://" + pod.IP.String() + "/", "http://" + n.Gateway.String() + ":18080/"} {
		if got := httpGet(t, n.HostNS, url); got != "hello from the pod\n" {
			t.Errorf("GET %s = %q", url, got)
		}
	}

	// Bulk data both ways through the redirects at the pod's MTU: 4 MiB
	// fetched from the guest, and 4 MiB the guest fetches from a server on
	// the node's bridge address, each checked against the sender's sum.
	big := httpGet(t, n.HostNS, "http://"+pod.IP.String()+"/big")
	sum := run(t, gc, "sh", "-c", "cat /tmp/big.md5")
	if got := fmt.Sprintf("%x", md5.Sum([]byte(big))); len(big) != 4<<20 || !strings.HasPrefix(sum.stdout, got) {
		t.Errorf("4 MiB from the guest: %d bytes, md5 %s, the guest's %q", len(big), got, sum.stdout)
	}
	payload := make([]byte, 4<<20)
	rand.Read(payload)
	node := cnitest.Listen(t, n.HostNS, "tcp", net.JoinHostPort(n.Gateway.String(), "0"))
	go http.Serve(node, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(payload) }))
	r = run(t, gc, "sh", "-c", inPod+"nsenter --net=$ns wget -q -O - http://"+node.Addr().String()+"/ | md5sum")
	if want := fmt.Sprintf("%x", md5.Sum(payload)); !strings.HasPrefix(r.stdout, want) {
		t.Errorf("4 MiB to the guest: md5 %q, want %s (%s)", r.stdout, want, r.stderr)
	}

	srv.Kill(ctx)
	srv.Wait()

	// Released as a restarted shim would: from what it kept.
	again, err := podnet.Reopen(gc, m.m, pod.NetNS, at.Adapter, at.Endpoint.Options)
	if err != nil {
		t.Fatal(err)
	}
	t0 = time.Now()
	if err := again.Release(ctx); err != nil {
		t.Fatalf("release: %v", err)
	}
	t.Logf("release: %v", time.Since(t0))
	assertNoPodNIC(t, m, pod.NetNS)
	if r := run(t, gc, "sh", "-c", "cat /sys/class/net/*/address"); strings.Contains(r.stdout, mac) {
		t.Errorf("the guest still has %s:\n%s", mac, r.stdout)
	}
	if err := at.Release(ctx); err != nil {
		t.Errorf("a second release: %v", err)
	}
}

// assertNoPodNIC checks that neither the pod namespace nor QEMU holds
// anything of an attach.
func assertNoPodNIC(t *testing.T, m *machine, ns string) {
	t.Helper()
	if left := cnitest.Plumbing(t, ns); len(left) > 0 {
		t.Errorf("left in the pod namespace: %q", left)
	}
	ids, err := m.m.Netdevs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if strings.HasPrefix(id, "tap-") {
			t.Errorf("QEMU still has netdev %s", id)
		}
	}
}

// TestVMPodNetworkVMGone: a pod network whose VM stopped, and whose
// namespace then went, releases cleanly.
func TestVMPodNetworkVMGone(t *testing.T) {
	n := cnitest.NewNetwork(t, cnitest.Options{})
	pod := n.AddPod(t)
	m := boot(t, "")
	defer m.close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	at, err := podnet.Attach(ctx, m.gc(), m.m, pod.NetNS, podnet.AttachOptions{})
	if err != nil {
		t.Fatalf("attach: %v\nconsole:\n%s", err, m.console)
	}
	m.close()
	if err := at.Release(ctx); err != nil {
		t.Errorf("release after the VM stopped: %v", err)
	}
	if left := cnitest.Plumbing(t, pod.NetNS); len(left) > 0 {
		t.Errorf("left in the pod namespace: %q", left)
	}
	// Plugging into a stopped VM fails and releases the tap it was given.
	pod2 := n.AddPod(t)
	ep, err := podnet.Setup(ctx, pod2.NetNS, podnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ep.Plug(m.m)(ctx); !errors.Is(err, vm.ErrNotRunning) {
		t.Errorf("plug into a stopped VM: %v", err)
	}
	if left := cnitest.Plumbing(t, pod2.NetNS); len(left) > 0 {
		t.Errorf("a failed plug left in the pod namespace: %q", left)
	}
	if err := podnet.Teardown(ctx, pod.NetNS+"-gone", podnet.Options{}); err != nil {
		t.Errorf("teardown of a namespace that is gone: %v", err)
	}
}
