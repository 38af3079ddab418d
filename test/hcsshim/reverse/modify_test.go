package reverse

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/uvmgcs/gcs/protocol"
)

// TestModifySettings sends every ModifySettings type an hcsshim LCOW host
// sends. Those that need a device host mode lacks (a SCSI controller or a
// pmem device on VMBus, a host 9p server) must fail cleanly, with an
// error and the guest still serving; README.md records each result.
func TestModifySettings(t *testing.T) {
	gc := startGuest(t).connect(t)
	nsid := uuid.NewString()
	mustFail := func(what string, err error) {
		t.Helper()
		if err == nil {
			t.Errorf("%s succeeded in host mode", what)
			return
		}
		t.Logf("%s: %v", what, err)
	}
	ctx := func() context.Context {
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		t.Cleanup(cancel)
		return c
	}

	// SCSI and pmem: no VMBus, so no device to find.
	mustFail("MappedVirtualDisk add", gc.AddSCSIDisk(ctx(), protocol.MappedVirtualDisk{Controller: 0, Lun: 3, MountPath: "/run/mounts/scsi/m3", ReadOnly: true}))
	mustFail("SCSIDevice remove", gc.RemoveSCSIDevice(ctx(), 0, 3))
	mustFail("VPMemDevice add", gc.AddVPMemDevice(ctx(), protocol.VPMemDevice{DeviceNumber: 0, MountPath: "/run/layers/p0"}))
	// Plan9 over a port: the guest dials it; nothing serves 9p there.
	mustFail("MappedDirectory add (no 9p server on the port)", gc.AddMappedDirectory(ctx(), protocol.MappedDirectory{MountPath: "/run/mounts/m1", Port: 0x50000001, ShareName: "m1"}))
	// hcsshim's guest has no NetworkNamespace resource: its namespaces come
	// into being with their first adapter or container.
	mustFail("NetworkNamespace add", gc.AddNetworkNamespace(ctx(), nsid))
	// An adapter is looked up as a VMBus NIC by its ID (hcsshim's guest
	// gives up after a few seconds).
	mustFail("Network add", gc.AddNetworkAdapter(ctx(), protocol.NetworkAdapter{NamespaceID: nsid, ID: uuid.NewString(),
		MacAddress: "00-15-5d-01-02-03", IPConfigs: []protocol.IPConfig{{IPAddress: "192.0.2.10", PrefixLength: 24}}}))

	// CombinedLayers, read-only (no scratch; overlayfs then needs two
	// lower layers): directory layers work here.
	lower := busyboxLayer(t)
	cl := protocol.CombinedLayers{ContainerRootPath: "/run/gcs/c/ro/rootfs", Layers: []protocol.Layer{{Path: lower}, {Path: t.TempDir()}}}
	if err := gc.CombineLayers(ctx(), cl); err != nil {
		t.Fatalf("CombinedLayers add: %v", err)
	}
	p := uvmProcess(t, gc, false, "sh", "-c", "ls /run/gcs/c/ro/rootfs/bin/busybox && touch /run/gcs/c/ro/rootfs/x")
	if r := collect(t, p); r.stdout != "/run/gcs/c/ro/rootfs/bin/busybox\n" || r.code == 0 {
		t.Errorf("read-only root: %+v", r)
	}
	if err := gc.RemoveCombinedLayers(ctx(), cl); err != nil {
		t.Errorf("CombinedLayers remove: %v", err)
	}
	if _, err := os.Stat(filepath.Join(lower, "x")); err == nil {
		t.Error("a write reached the lower layer")
	}

	// Still serving.
	if r := collect(t, uvmProcess(t, gc, false, "echo", "ok")); r.stdout != "ok\n" {
		t.Fatalf("after the failures: %+v", r)
	}
}
