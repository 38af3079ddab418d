package vm

import (
	"context"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/uvmgcs/gcs/host"
	"github.com/uvmgcs/gcs/host/podnet"
	"github.com/uvmgcs/gcs/host/podnet/cnitest"
	"github.com/uvmgcs/gcs/protocol"
)

// httpGet fetches url from inside the network namespace at ns.
func httpGet(t *testing.T, ns, url string) string {
	t.Helper()
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return cnitest.Dial(t, ns, network, addr, 10*time.Second)
	}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 20 * time.Second}).Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %q %v", url, resp.Status, b, err)
	}
	return string(b)
}

// TestVMPodNetwork: a pod network made by Debian's CNI plugins, as
// containerd's CRI plugin makes one, attached to a running VM: the guest
// adapter has the pod's MAC, MTU, address, route and DNS; an HTTP server
// in a container of the pod answers from the node's side of the bridge by
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

	layerImg, scratchImg := images(t)
	ld, err := m.m.AddSCSIDisk(ctx, layerImg, true)
	if err != nil {
		t.Fatal(err)
	}
	sd, err := m.m.AddSCSIDisk(ctx, scratchImg, false)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, d := range []struct{ c, l uint8 }{{ld.Controller, ld.LUN}, {sd.Controller, sd.LUN}} {
			gc.RemoveSCSIDevice(ctx, d.c, d.l)
		}
		m.m.RemoveSCSIDisk(ctx, ld)
		m.m.RemoveSCSIDisk(ctx, sd)
	}()
	root := host.GuestBundleRoot + "/vmpod/rootfs"
	unmount, err := gc.MountLayerStack(ctx, []protocol.MappedVirtualDisk{{Controller: ld.Controller, Lun: ld.LUN}},
		&protocol.MappedVirtualDisk{Controller: sd.Controller, Lun: sd.LUN}, root)
	if err != nil {
		t.Fatal(err)
	}
	defer unmount(ctx)
	spec := host.DefaultSpec(root, []string{"sh", "-c", "mkdir -p /www && echo hello from the pod >/www/index.html && exec httpd -f -p 80 -h /www"}, false)
	spec.Windows = &specs.Windows{Network: &specs.WindowsNetwork{NetworkNamespace: at.Adapter.NamespaceID}}
	c, err := gc.CreateContainer(ctx, "vmpod", spec)
	if err != nil {
		t.Fatal(err)
	}
	init, err := c.CreateProcess(ctx, &protocol.ProcessParameters{})
	if err != nil {
		t.Fatalf("start: %v\nconsole:\n%s", err, m.console)
	}
	defer func() {
		init.Signal(ctx, 9)
		c.Wait()
		if err := c.Delete(ctx); err != nil {
			t.Errorf("delete: %v", err)
		}
	}()

	p, err := c.Exec(ctx, &specs.Process{Args: []string{"sh", "-c",
		"for i in /sys/class/net/*; do echo ${i##*/} $(cat $i/address) $(cat $i/mtu); done; ip -o -4 addr show; ip -4 route; cat /etc/resolv.conf"},
		Cwd: "/", Env: []string{"PATH=/bin"}}, &protocol.ProcessParameters{CreateStdOutPipe: true, CreateStdErrPipe: true})
	if err != nil {
		t.Fatal(err)
	}
	r := collect(t, p)
	t.Logf("the pod's network in the guest:\n%s", r.stdout)
	for _, want := range []string{" " + mac + " 1400\n", " " + pod.IP.String() + "/24 ", "default via 10.99.0.1 ", "nameserver 10.99.0.53", "search pod.test"} {
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
	if err := podnet.Teardown(ctx, pod.NetNS+"-gone", podnet.Options{}); err != nil {
		t.Errorf("teardown of a namespace that is gone: %v", err)
	}
}
