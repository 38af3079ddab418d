package vm

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/uvmgcs/gcs/host"
	"github.com/uvmgcs/gcs/host/vm"
	"github.com/uvmgcs/gcs/protocol"
)

// TestVMNetwork: a NIC hot-added on a restricted user-mode network, handed
// to a pod's namespace, and a container in it that reaches a TCP server on
// the host's loopback through the one forward the NIC allows.
func TestVMNetwork(t *testing.T) {
	m := shared.get(t)
	gc := m.gc()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, "hello from the host")
			c.Close()
		}
	}()
	mac, err := m.m.AddNIC(ctx, vm.NIC{
		Subnet:   "10.0.2.0/24",
		Forwards: []vm.Forward{{Guest: "10.0.2.100:8080", Host: l.Addr().String()}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ns := "6f2b1c3e-0000-4000-8000-00000000abcd"
	adapter := protocol.NetworkAdapter{
		NamespaceID: ns, ID: "0d9c8a51-1111-4222-8333-444455556666", MacAddress: mac,
		DNSServerList: "10.0.2.3", DNSSuffix: "example.test",
		IPConfigs: []protocol.IPConfig{{IPAddress: "10.0.2.15", PrefixLength: 24}},
		Routes:    []protocol.Route{{NextHop: "10.0.2.2", DestinationPrefix: "0.0.0.0/0"}},
	}
	if err := gc.AddNetworkAdapter(ctx, adapter); err != nil {
		t.Fatalf("add adapter: %v\nconsole:\n%s", err, m.console)
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
		for _, d := range []vm.Disk{ld, sd} {
			gc.RemoveSCSIDevice(ctx, d.Controller, d.LUN)
			m.m.RemoveSCSIDisk(ctx, d)
		}
	}()
	root := host.GuestBundleRoot + "/vmnet/rootfs"
	unmount, err := gc.MountLayerStack(ctx, []protocol.MappedVirtualDisk{{Controller: ld.Controller, Lun: ld.LUN}},
		&protocol.MappedVirtualDisk{Controller: sd.Controller, Lun: sd.LUN}, root)
	if err != nil {
		t.Fatal(err)
	}
	defer unmount(ctx)
	spec := host.DefaultSpec(root, []string{"sh", "-c", "cat /etc/resolv.conf; ip -4 addr show | grep -c 10.0.2.15; nc -w 5 10.0.2.100 8080"}, false)
	spec.Windows = &specs.Windows{Network: &specs.WindowsNetwork{NetworkNamespace: ns}}
	c, err := gc.CreateContainer(ctx, "vmnet", spec)
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.CreateProcess(ctx, &protocol.ProcessParameters{CreateStdOutPipe: true, CreateStdErrPipe: true})
	if err != nil {
		t.Fatal(err)
	}
	r := collect(t, p)
	c.Wait()
	if err := c.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(r.stdout, "nameserver 10.0.2.3") || !strings.Contains(r.stdout, "search example.test") ||
		!strings.Contains(r.stdout, "\n1\n") || !strings.HasSuffix(r.stdout, "hello from the host\n") {
		t.Fatalf("container in the pod's network: %+v", r)
	}
	if err := gc.RemoveNetworkAdapter(ctx, adapter); err != nil {
		t.Fatalf("remove adapter: %v", err)
	}
}
