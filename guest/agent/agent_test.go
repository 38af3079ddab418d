package agent

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/uvmgcs/gcs/protocol"
)

// TestAgentServes builds the agent as cmd/gcs does, over temporary roots,
// and drives it over its bridge: resources reach their owners through the
// resource mux, refusals carry their HRESULT, and a VM shutdown ends Serve.
func TestAgentServes(t *testing.T) {
	requireConfined(t)
	state := t.TempDir()
	for _, d := range []string{"sys", "dev", "modules", "layers/l1"} {
		if err := os.MkdirAll(filepath.Join(state, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	a, err := New(Config{
		Dialer: &pipeDialer{}, StateRoot: state, CgroupParent: "/agent-test",
		SysRoot: filepath.Join(state, "sys"), DevRoot: filepath.Join(state, "dev"),
		ModulesRoot: filepath.Join(state, "modules"), StorageRoots: []string{state},
		DeviceTimeout: 20 * time.Millisecond, LinkTimeout: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(context.Background())
	agentEnd, hostEnd := net.Pipe()
	served := make(chan error, 1)
	go func() { served <- a.Serve(context.Background(), agentEnd) }()
	defer hostEnd.Close()
	h := &host{t: t, conn: hostEnd, r: protocol.NewReader(hostEnd, protocol.MaxFrameSize)}
	id := uint64(0)
	call := func(typ protocol.MessageType, body []byte) protocol.HResult {
		id++
		h.send(typ, id, body)
		return protocol.HResult(h.answer(typ, id).Result)
	}
	if hr := call(protocol.NegotiateProtocol, []byte(`{"MinimumVersion":4,"MaximumVersion":4}`)); hr != 0 {
		t.Fatal(hr)
	}

	rootfs := filepath.Join(state, "c", "c1", "rootfs")
	layers := protocol.CombinedLayers{ContainerRootPath: rootfs, Layers: []protocol.Layer{{Path: filepath.Join(state, "layers", "l1")}}}
	ns := protocol.NetworkNamespace{ID: "6c3a3c1a-5b0e-4a8a-9c51-2f8e3d4c5b6a"}
	for _, tc := range []struct {
		name string
		body []byte
		want protocol.HResult
	}{
		{"layers", modify(protocol.ResourceCombinedLayers, "Add", layers), protocol.HrOK},
		{"namespace", modify(protocol.ResourceNetworkNamespace, "Add", ns), protocol.HrOK},
		{"layers outside the roots", modify(protocol.ResourceCombinedLayers, "Add",
			protocol.CombinedLayers{ContainerRootPath: "/etc/x", Layers: layers.Layers}), protocol.HrInvalidArg},
		{"missing disk", modify(protocol.ResourceMappedVirtualDisk, "Add",
			protocol.MappedVirtualDisk{MountPath: filepath.Join(state, "m"), Lun: 3}), protocol.HrVmcomputeTimeout},
		{"update an adapter", modify(protocol.ResourceNetwork, "Update", protocol.NetworkAdapter{}), protocol.HrNotImpl},
		{"bad settings", modify(protocol.ResourceVPMemDevice, "Add", "pmem0"), protocol.HrVmcomputeInvalidJSON},
		{"unknown resource", modify("Floppy", "Add", struct{}{}), protocol.HrNotImpl},
	} {
		if hr := call(protocol.ModifySettings, tc.body); hr != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, hr, tc.want)
		}
	}
	mounts := mountPoints(t)
	for _, m := range []string{rootfs, filepath.Join(state, "netns", ns.ID)} {
		if !slices.Contains(mounts, m) {
			t.Errorf("nothing mounted at %s", m)
		}
	}
	if hr := call(protocol.ModifySettings, modify(protocol.ResourceCombinedLayers, "Remove", layers)); hr != 0 {
		t.Fatal(hr)
	}
	if hr := call(protocol.ModifySettings, modify(protocol.ResourceNetworkNamespace, "Remove", ns)); hr != 0 {
		t.Fatal(hr)
	}
	for _, m := range mountPoints(t) {
		if within(m, state) {
			t.Errorf("%s still mounted", m)
		}
	}
	if hr := call(protocol.ShutdownForced, []byte(`{"ContainerId":"`+protocol.UVMContainerID+`"}`)); hr != 0 {
		t.Fatal(hr)
	}
	select {
	case <-served:
	case <-time.After(10 * time.Second):
		t.Fatal("Serve kept serving after the VM shut down")
	}
}

// TestDeleteWithMainThreadInAContainer replays a container's life (layers,
// create, init, wait, delete, layers removed) until the process's main
// thread has been left in a container's mount namespace (libcontainer
// enters one on a locked thread; the Go runtime parks rather than ends the
// main thread), and once more after: deleting the container must still
// find and detach its root file system in the agent's own mount table,
// not /proc/self's, or it deletes through the mounted root and fails.
func TestDeleteWithMainThreadInAContainer(t *testing.T) {
	requireConfined(t)
	env := newFuzzEnv(t)
	life := sessionSeeds()[0]
	wedged := func() bool {
		self, _ := os.Readlink("/proc/self/ns/mnt")
		thread, _ := os.Readlink("/proc/thread-self/ns/mnt")
		return self != thread
	}
	for i := 0; i < 30; i++ {
		was := wedged()
		env.run(t, slices.Clone(life), true)
		if was {
			return
		}
	}
	t.Logf("the main thread never entered a container's mount namespace in 30 runs; the lives ran anyway")
}
