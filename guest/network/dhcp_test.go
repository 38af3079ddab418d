package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/uvmgcs/gcs/protocol"
)

func busybox(t *testing.T) string {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("SKIP (loud): busybox is missing (apt-get install busybox-static); no DHCP client or server to test with")
	}
	return bb
}

// startIn starts cmd in namespace ns; it is killed when the test ends.
func startIn(t *testing.T, ns netns.NsHandle, cmd *exec.Cmd) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread leaves in ns
		if err := netns.Set(ns); err != nil {
			errc <- err
			return
		}
		errc <- cmd.Start()
	}()
	if err := <-errc; err != nil {
		t.Fatalf("start %v: %v", cmd.Args, err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
}

func TestDHCPLease(t *testing.T) {
	bb := busybox(t)
	dir := t.TempDir()
	// udhcpc configures nothing itself; its script applies the lease.
	script := filepath.Join(dir, "udhcpc.script")
	err := os.WriteFile(script, []byte("#!/bin/sh\ncase \"$1\" in bound|renew) exec "+bb+
		" ip addr add \"$ip/$mask\" dev \"$interface\";; esac\n"), 0o755)
	if err != nil {
		t.Fatal(err)
	}
	e := newTestEnv(t, Config{DHCPCommand: []string{bb, "udhcpc", "-s", script}, DHCPTimeout: 20 * time.Second})
	peer, ad := e.veth(t)
	if err := e.h.AddrAdd(peer, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 66, 0, 1), Mask: net.CIDRMask(24, 32)}}); err != nil {
		t.Fatal(err)
	}
	if err := e.h.LinkSetUp(peer); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "udhcpd.conf")
	err = os.WriteFile(conf, []byte(fmt.Sprintf("start 10.66.0.100\nend 10.66.0.110\nmax_leases 11\ninterface %s\n"+
		"lease_file %s/leases\npidfile %s/udhcpd.pid\noption subnet 255.255.255.0\n", peer.Attrs().Name, dir, dir)), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	startIn(t, e.root, exec.Command(bb, "udhcpd", "-f", conf))

	id := newID()
	a := protocol.NetworkAdapter{NamespaceID: id, MacAddress: ad.Attrs().HardwareAddr.String(), DNSServerList: "10.66.0.1"}
	if err := e.m.AddAdapter(context.Background(), &a); err != nil {
		t.Fatal(err)
	}
	inNSLink(t, filepath.Join(e.dir, id), ad.Attrs().HardwareAddr, func(h *netlink.Handle, l netlink.Link) {
		addrs, _ := h.AddrList(l, netlink.FAMILY_V4)
		if len(addrs) != 1 || !strings.HasPrefix(addrs[0].IPNet.String(), "10.66.0.1") || !strings.HasSuffix(addrs[0].IPNet.String(), "/24") {
			t.Errorf("leased addresses %v", addrs)
		}
	})
}

func TestDHCPNoServer(t *testing.T) {
	bb := busybox(t)
	e := newTestEnv(t, Config{DHCPCommand: []string{bb, "udhcpc", "-T", "1"}, DHCPTimeout: 1500 * time.Millisecond})
	_, ad := e.veth(t)
	a := protocol.NetworkAdapter{NamespaceID: newID(), MacAddress: ad.Attrs().HardwareAddr.String()}
	// -T 1 -t 3 would give up after 3 s; the deadline ends it first.
	err := e.m.AddAdapter(context.Background(), &a)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("no DHCP server: %v", err)
	}
	if _, err := e.h.LinkByName(ad.Attrs().Name); err != nil {
		t.Errorf("adapter not back: %v", err)
	}
}
