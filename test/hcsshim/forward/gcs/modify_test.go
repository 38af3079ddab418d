//go:build ignore

package gcs_test

import (
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/Microsoft/hcsshim/internal/protocol/guestrequest"
	"github.com/Microsoft/hcsshim/internal/protocol/guestresource"
)

// HRESULTs the agent answers with.
const (
	hrVmcomputeTimeout = 0xc0370109
	hrNotImpl          = 0x80004001
)

// modification is what hcsshim's uvm.modify hands GuestConnection.Modify:
// the GuestRequest of an hcsschema.ModifySettingRequest.
func modification(rt guestrequest.ResourceType, req guestrequest.RequestType, settings any) guestrequest.ModificationRequest {
	return guestrequest.ModificationRequest{ResourceType: rt, RequestType: req, Settings: settings}
}

// TestUvmgcsModifySettings sends the ModifySettings types hcsshim sends to
// a Linux guest for the utility VM (CombinedLayers and ContainerConstraints
// are in the container test). Host mode has no SCSI controller, VPMem
// device or 9p port server: those requests must fail with the agent's
// exact, clean error and leave it serving.
func TestUvmgcsModifySettings(t *testing.T) {
	a := startAgent(t)
	ctx := ctxT(t)

	t.Run("MappedVirtualDisk", func(t *testing.T) {
		err := a.gc.Modify(ctx, modification(guestresource.ResourceTypeMappedVirtualDisk, guestrequest.RequestTypeAdd,
			guestresource.LCOWMappedVirtualDisk{MountPath: "/run/mounts/m0", Controller: 0, Lun: 1, ReadOnly: true, Options: []string{"noatime"}}))
		a.cleanError(t, "ModifySettings MappedVirtualDisk Add (SCSI, host mode)", err, hrVmcomputeTimeout, "0 SCSI controllers (virtio-scsi or storvsc), no controller 0")
		err = a.gc.Modify(ctx, modification(guestresource.ResourceTypeMappedVirtualDisk, guestrequest.RequestTypeRemove,
			guestresource.LCOWMappedVirtualDisk{MountPath: "/run/mounts/m0", Controller: 0, Lun: 1}))
		if err != nil {
			t.Fatal(err)
		}
		a.alive(t)
		result(t, "ModifySettings MappedVirtualDisk Remove (nothing mounted there)", "pass (no-op)")
	})
	t.Run("SCSIDeviceRemove", func(t *testing.T) {
		err := a.gc.Modify(ctx, modification(guestresource.ResourceTypeSCSIDevice, guestrequest.RequestTypeRemove,
			guestresource.SCSIDevice{Controller: 0, Lun: 1}))
		if err != nil {
			t.Fatal(err)
		}
		a.alive(t)
		result(t, "ModifySettings SCSIDevice Remove (host mode: no such device)", "pass (no-op)")
	})
	t.Run("VPMemDevice", func(t *testing.T) {
		err := a.gc.Modify(ctx, modification(guestresource.ResourceTypeVPMemDevice, guestrequest.RequestTypeAdd,
			guestresource.LCOWMappedVPMemDevice{DeviceNumber: 0, MountPath: "/run/layers/p0",
				MappingInfo: &guestresource.LCOWVPMemMappingInfo{DeviceOffsetInBytes: 0, DeviceSizeInBytes: 1 << 20}}))
		a.cleanError(t, "ModifySettings VPMemDevice Add (host mode)", err, hrVmcomputeTimeout, "no pmem0 in sysfs")
	})
	t.Run("MappedDirectory", func(t *testing.T) {
		// hcsshim shares every host directory with a Linux guest as Plan9
		// over a vsock port. Nothing serves 9p on this port.
		err := a.gc.Modify(ctx, modification(guestresource.ResourceTypeMappedDirectory, guestrequest.RequestTypeAdd,
			guestresource.LCOWMappedDirectory{MountPath: filepath.Join(a.state, "share"), Port: 0x50000000, ShareName: "share", ReadOnly: true}))
		if err == nil || hresult(err)&0x80000000 == 0 {
			t.Fatalf("MappedDirectory over a port nobody serves: %v", err)
		}
		a.alive(t)
		result(t, "ModifySettings MappedDirectory Add (Plan9 over a port, no 9p server)",
			"clean error "+hex(hresult(err))+" ("+err.Error()+"); agent keeps serving")
	})
	t.Run("NotImplemented", func(t *testing.T) {
		// Types hcsshim sends only to confidential (SNP) utility VMs or for
		// assigned PCI devices: refused as not implemented.
		for _, m := range []guestrequest.ModificationRequest{
			modification(guestresource.ResourceTypeSecurityPolicy, guestrequest.RequestTypeAdd,
				guestresource.ConfidentialOptions{EnforcerType: "rego", EncodedSecurityPolicy: "cGFja2FnZQ=="}),
			modification(guestresource.ResourceTypePolicyFragment, guestrequest.RequestTypeAdd, guestresource.SecurityPolicyFragment{Fragment: "eA=="}),
			modification(guestresource.ResourceTypeVPCIDevice, guestrequest.RequestTypeAdd,
				guestresource.LCOWMappedVPCIDevice{VMBusGUID: "6f0d3f7e-1b2a-4c5d-8e9f-0a1b2c3d4e5f"}),
		} {
			a.cleanError(t, "ModifySettings "+string(m.ResourceType)+" Add", a.gc.Modify(ctx, m), hrNotImpl, "Add "+string(m.ResourceType))
		}
	})
	t.Run("Network", func(t *testing.T) {
		const nsID = "c3d4e5f6-0000-4000-8000-000000000001"
		const nicID = "6f0d3f7e-1b2a-4c5d-8e9f-0a1b2c3d4e5f"
		ns := map[string]any{"Id": nsID, "SchemaVersion": map[string]int{"Major": 2}}
		if err := a.gc.Modify(ctx, modification(guestresource.ResourceTypeNetworkNamespace, guestrequest.RequestTypeAdd, ns)); err != nil {
			t.Fatal(err)
		}
		result(t, "ModifySettings NetworkNamespace Add", "pass")

		adapter := guestresource.LCOWNetworkAdapter{NamespaceID: nsID, ID: nicID, MacAddress: "00-15-5D-AA-BB-CC",
			IPConfigs: []guestresource.LCOWIPConfig{{IPAddress: "192.0.2.10", PrefixLength: 24}},
			Routes:    []guestresource.LCOWRoute{{NextHop: "192.0.2.1", DestinationPrefix: "0.0.0.0/0"}}}
		// No such NIC yet.
		err := a.gc.Modify(ctx, modification(guestresource.ResourceTypeNetwork, guestrequest.RequestTypeAdd, adapter))
		a.cleanError(t, "ModifySettings Network Add (no NIC with that MAC)", err, hrVmcomputeTimeout, "no network interface with MAC 00:15:5d:aa:bb:cc")

		// The NIC hcsshim would have hot-added, in the agent's network.
		h := a.netlink(t)
		mac, _ := net.ParseMAC("00:15:5d:aa:bb:cc")
		if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "hotadd0", HardwareAddr: mac}, PeerName: "hotadd0-peer"}); err != nil {
			t.Fatal(err)
		}
		if err := a.gc.Modify(ctx, modification(guestresource.ResourceTypeNetwork, guestrequest.RequestTypeAdd, adapter)); err != nil {
			t.Fatal(err)
		}
		if _, err := h.LinkByName("hotadd0"); err == nil {
			t.Fatal("the adapter is still in the utility VM's namespace")
		}
		result(t, "ModifySettings Network Add", "pass (NIC moved into the pod namespace)")

		// A container in the pod's network, named as hcsshim's LCOW
		// documents name it.
		c := a.containerSpec(t, "pod", nil, func(s *specs.Spec) {
			s.Windows = &specs.Windows{Network: &specs.WindowsNetwork{NetworkNamespace: nsID}}
		}, "sh", "-c", "ip -4 addr show; ip route")
		ic, out := c.init(t, nil)
		c.waitExit(t)
		ic.Wait()
		if !strings.Contains(out.String(), "inet 192.0.2.10/24") || !strings.Contains(out.String(), "default via 192.0.2.1") {
			t.Fatalf("container network:\n%s", out.String())
		}
		a.remove(t, c)
		result(t, "Create with windows.network.networkNamespace (a pod container)", "pass (the container sees the adapter's address and route)")
		remove := guestresource.LCOWNetworkAdapter{NamespaceID: nsID, ID: nicID}
		if err := a.gc.Modify(ctx, modification(guestresource.ResourceTypeNetwork, guestrequest.RequestTypeRemove, &remove)); err != nil {
			t.Fatal(err)
		}
		result(t, "ModifySettings Network Remove", "pass")
		if err := a.gc.Modify(ctx, modification(guestresource.ResourceTypeNetworkNamespace, guestrequest.RequestTypeRemove, ns)); err != nil {
			t.Fatal(err)
		}
		result(t, "ModifySettings NetworkNamespace Remove", "pass")
		a.alive(t)
	})
}

// netlink is a handle on the agent's network namespace.
func (a *agent) netlink(t testing.TB) *netlink.Handle {
	t.Helper()
	ns, err := netns.GetFromPid(a.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Delete)
	return h
}
