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
	"github.com/uvmgcs/gcs/host/uvm"
	"github.com/uvmgcs/gcs/host/vm/qemu"
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
	ns := "6f2b1c3e-0000-4000-8000-00000000abcd"
	nic, err := m.u.AddNIC(ctx, m.m.PlugNIC(qemu.NIC{
		Subnet:   "10.0.2.0/24",
		Forwards: []qemu.Forward{{Guest: "10.0.2.100:8080", Host: l.Addr().String()}},
	}), protocol.NetworkAdapter{
		NamespaceID: ns, ID: "0d9c8a51-1111-4222-8333-444455556666",
		DNSServerList: "10.0.2.3", DNSSuffix: "example.test",
		IPConfigs: []protocol.IPConfig{{IPAddress: "10.0.2.15", PrefixLength: 24}},
		Routes:    []protocol.Route{{NextHop: "10.0.2.2", DestinationPrefix: "0.0.0.0/0"}},
	})
	if err != nil {
		t.Fatalf("add nic: %v\nconsole:\n%s", err, m.console)
	}

	layerImg, scratchImg := images(t)
	spec := host.DefaultSpec("", []string{"sh", "-c", "cat /etc/resolv.conf; ip -4 addr show | grep -c 10.0.2.15; nc -w 5 10.0.2.100 8080"}, false)
	spec.Windows = &specs.Windows{Network: &specs.WindowsNetwork{NetworkNamespace: ns}}
	c, err := m.u.CreateContainer(ctx, "vmnet", spec, uvm.ContainerConfig{RootFS: uvm.RootFS{Layers: []string{layerImg}, Scratch: scratchImg}})
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
	if err := nic.Release(ctx); err != nil {
		t.Fatalf("remove the nic: %v", err)
	}
	if r := run(t, gc, "sh", "-c", "ls /sys/class/net | grep -c eth"); r.stdout != "0\n" {
		t.Fatalf("a NIC is left in the VM: %+v", r)
	}
}
