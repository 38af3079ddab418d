package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/uvmgcs/gcs/guest/runtime"
	"github.com/uvmgcs/gcs/guest/storage/storagetest"
	"github.com/uvmgcs/gcs/protocol"
)

// stateToken in a fuzzed body stands for the input's state root, and
// pidToken for the process id of the input's last ExecuteProcess, so seeds
// (and what the fuzzer makes of them) can name paths and processes the
// agent knows.
const (
	stateToken = "$STATE"
	pidToken   = "$PID"
)

// maxFuzzBody bounds a fuzzed request body.
const maxFuzzBody = 1 << 20

// pipeDialer stands in for the host's stdio listeners: every port dials
// one end of a pipe whose other end reads to EOF and closes, so processes
// started with stdio run and drain as they would against a host.
type pipeDialer struct {
	mu    sync.Mutex
	conns []net.Conn
}

func (d *pipeDialer) Dial(ctx context.Context, port uint32) (net.Conn, error) {
	if port == 0 {
		return nil, fmt.Errorf("dial port 0: %w", unix.ECONNREFUSED)
	}
	guest, host := net.Pipe()
	d.mu.Lock()
	d.conns = append(d.conns, host)
	d.mu.Unlock()
	go func() {
		io.Copy(io.Discard, host)
		host.Close()
	}()
	return guest, nil
}

func (d *pipeDialer) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.conns {
		c.Close()
	}
	d.conns = nil
}

// fuzzEnv is what every input is checked against: the sandbox as it was
// before the first input.
type fuzzEnv struct {
	// reaper serves every input's agent: a process has one.
	reaper *runtime.Reaper
	mounts []string // mount points
	links  []string // links in the test's network namespace
}

func newFuzzEnv(t testing.TB) *fuzzEnv {
	// Orphans of what the agent starts come back to this process, so the
	// check for leftover processes sees them.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	e := &fuzzEnv{mounts: mountPoints(t), links: linkNames(t), reaper: runtime.NewReaper()}
	ctx, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	go e.reaper.Run(ctx)
	if left := cgroupsLeft(t); len(left) > 0 {
		t.Fatalf("cgroups in the sandbox before the first input: %v", left)
	}
	return e
}

func mountPoints(t testing.TB) []string {
	t.Helper()
	ms, err := storagetest.ReadMountInfo("/proc/thread-self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.MountPoint
	}
	slices.Sort(out)
	return out
}

func linkNames(t testing.TB) []string {
	t.Helper()
	ls, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range ls {
		out = append(out, l.Attrs().Name)
	}
	slices.Sort(out)
	return out
}

// fuzzCgroupParent is the fuzzed agents' CgroupParent.
const fuzzCgroupParent = "/fuzz"

// cgroupsLeft lists the cgroups beneath the sandbox's cgroup roots but the
// agents' parent, which outlives them as /containers does in a VM, and
// the cgroups beneath the parent.
func cgroupsLeft(t testing.TB) []string {
	t.Helper()
	var out []string
	for _, root := range confinement.cgroups {
		filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err != nil {
				t.Fatal(err)
			}
			if d.IsDir() && p != root && p != filepath.Join(root, fuzzCgroupParent) {
				out = append(out, p)
			}
			return nil
		})
	}
	return out
}

// children lists this process's child processes.
func children(t testing.TB) []string {
	t.Helper()
	self := strconv.Itoa(os.Getpid())
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		rest := string(b[bytes.LastIndexByte(b, ')')+1:])
		if f := strings.Fields(rest); len(f) > 1 && f[1] == self {
			out = append(out, e.Name()+" "+string(b[:bytes.LastIndexByte(b, ')')+1]))
		}
	}
	return out
}

// missing lists what is in a and not in b (as multisets).
func missing(a, b []string) []string {
	var out []string
	left := slices.Clone(b)
	for _, x := range a {
		if i := slices.Index(left, x); i >= 0 {
			left = slices.Delete(left, i, i+1)
			continue
		}
		out = append(out, x)
	}
	return out
}

// within reports whether p is dir or beneath it.
func within(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }

// host is the test's end of the bridge.
type host struct {
	t    *testing.T
	conn net.Conn
	r    *protocol.Reader
}

func (h *host) send(typ protocol.MessageType, id uint64, body []byte) {
	h.t.Helper()
	h.conn.SetWriteDeadline(time.Now().Add(answerTimeout))
	if _, err := h.conn.Write(protocol.AppendFrame(nil, typ, id, body)); err != nil {
		h.t.Fatalf("write request %d (%s): %v", id, typ, err)
	}
}

// answerTimeout bounds the wait for any one answer. Every request a single
// input makes is answered within milliseconds; the bound is generous
// because a machine the fuzzer shares (at low priority) can starve it.
const answerTimeout = 2 * time.Minute

// answer reads frames until the response to request id, skipping
// notifications; any other frame is a failure.
func (h *host) answer(typ protocol.MessageType, id uint64) protocol.ResponseBase {
	rb, _ := h.answerBody(typ, id)
	return rb
}

// answerBody is answer with the response's body.
func (h *host) answerBody(typ protocol.MessageType, id uint64) (protocol.ResponseBase, []byte) {
	h.t.Helper()
	h.conn.SetReadDeadline(time.Now().Add(answerTimeout))
	for {
		hdr, body, err := h.r.Next()
		if err != nil {
			h.t.Fatalf("no answer to request %d (%s): %v", id, typ, err)
		}
		if hdr.Type == protocol.ContainerNotification {
			continue
		}
		if hdr.ID != id || hdr.Type != typ.Response() {
			h.t.Fatalf("answer to request %d (%s) is frame %d of type %s", id, typ, hdr.ID, hdr.Type)
		}
		var rb protocol.ResponseBase
		if err := json.Unmarshal(body, &rb); err != nil {
			h.t.Fatalf("answer to request %d (%s) %q: %v", id, typ, body, err)
		}
		if strings.Contains(rb.ErrorMessage, "internal error handling") {
			h.t.Fatalf("request %d (%s) made a handler panic: %s", id, typ, rb.ErrorMessage)
		}
		return rb, body
	}
}

// request is one request of an input.
type request struct {
	typ  protocol.MessageType
	body []byte
}

// run serves one input's requests, in order, with a fresh agent and checks
// what it left; strict also fails on any failed request (for tests that
// replay a sequence known to be good).
func (e *fuzzEnv) run(t *testing.T, reqs []request, strict bool) {
	state, err := os.MkdirTemp(confinement.tmp, "state-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(state)
	for _, d := range []string{"sys", "dev", "modules", "layers/l1", "layers/host", "c/c1/rootfs"} {
		if err := os.MkdirAll(filepath.Join(state, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// layers/host is the machine's root file system, read-only: a layer
	// that containers can run programs from.
	hostLayer := filepath.Join(state, "layers", "host")
	if err := unix.Mount("/", hostLayer, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(hostLayer, unix.MNT_DETACH)
	if err := unix.Mount("", hostLayer, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	for i := range reqs {
		reqs[i].body = bytes.ReplaceAll(reqs[i].body, []byte(stateToken), []byte(state))
	}

	dialer := &pipeDialer{}
	defer dialer.Close()
	a, err := New(Config{
		Dialer:        dialer,
		StateRoot:     state,
		CgroupParent:  fuzzCgroupParent,
		SysRoot:       filepath.Join(state, "sys"),
		DevRoot:       filepath.Join(state, "dev"),
		ModulesRoot:   filepath.Join(state, "modules"),
		StorageRoots:  []string{state},
		ResolvConf:    filepath.Join(state, "resolv.conf"),
		DeviceTimeout: 20 * time.Millisecond,
		LinkTimeout:   20 * time.Millisecond,
		Reaper:        e.reaper,
	})
	if err != nil {
		t.Fatal(err)
	}
	agentEnd, hostEnd := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- a.Serve(ctx, agentEnd) }()
	h := &host{t: t, conn: hostEnd, r: protocol.NewReader(hostEnd, protocol.MaxFrameSize)}
	closed := false
	shutdown := func() {
		if closed {
			return
		}
		closed = true
		cancel()
		hostEnd.Close()
		select {
		case <-served:
		case <-time.After(answerTimeout):
			t.Fatal("Serve did not return after its connection closed")
		}
		done := make(chan error, 1)
		go func() { done <- a.Close(context.Background()) }()
		select {
		case <-done:
		case <-time.After(answerTimeout):
			t.Fatal("Close did not return")
		}
	}
	defer shutdown()

	h.send(protocol.NegotiateProtocol, 1, []byte(`{"MinimumVersion":4,"MaximumVersion":4}`))
	if rb := h.answer(protocol.NegotiateProtocol, 1); rb.Result != 0 {
		t.Fatalf("negotiation: %+v", rb)
	}
	shutDown := false
	id := uint64(1)
	pid := []byte("0")
	for _, r := range reqs {
		id++
		r.body = bytes.ReplaceAll(r.body, []byte(pidToken), pid)
		h.send(r.typ, id, r.body)
		if r.typ.Kind() != protocol.KindRequest {
			continue
		}
		rb, body := h.answerBody(r.typ, id)
		if strict && rb.Result != 0 {
			t.Fatalf("request %d (%s): %s", id, r.typ, rb.ErrorMessage)
		}
		var ep protocol.ExecuteProcessResponse
		if r.typ == protocol.ExecuteProcess && rb.Result == 0 && json.Unmarshal(body, &ep) == nil {
			pid = strconv.AppendUint(nil, uint64(ep.ProcessID), 10)
		}
		if shutDown = rb.Result == 0 && isUVMShutdown(r.typ, r.body); shutDown {
			break
		}
	}
	if shutDown {
		// The agent stops serving once it has answered.
		select {
		case <-served:
			served <- nil
		case <-time.After(answerTimeout):
			t.Fatal("the agent kept serving after a VM shutdown")
		}
	} else {
		// Whatever the input was, the agent still serves.
		id++
		h.send(protocol.Start, id, []byte(`{"ContainerId":"`+protocol.UVMContainerID+`"}`))
		if rb := h.answer(protocol.Start, id); protocol.HResult(rb.Result) != protocol.HrInvalidArg {
			t.Fatalf("the probe after the input: %+v", rb)
		}
	}

	// While the agent holds them, its mounts (layers, pod network
	// namespaces) are all inside its state root.
	for _, m := range mountPoints(t) {
		if !slices.Contains(e.mounts, m) && !within(m, state) {
			t.Fatalf("mount at %s, outside the state root %s", m, state)
		}
	}
	shutdown()
	if err := unix.Unmount(hostLayer, unix.MNT_DETACH); err != nil {
		t.Fatalf("unmount the host layer: %v", err)
	}

	// Once closed, the agent leaves nothing behind.
	// (Mounts of other programs that were copied into the sandbox when it
	// was made may go meanwhile; only new ones count.)
	if more := missing(mountPoints(t), e.mounts); len(more) > 0 {
		t.Fatalf("mounts after Close that were not there before the input: %v", more)
	}
	if got := linkNames(t); !slices.Equal(got, e.links) {
		t.Fatalf("links after Close: %v, want %v", got, e.links)
	}
	if left := cgroupsLeft(t); len(left) > 0 {
		t.Fatalf("cgroups after Close: %v", left)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := children(t)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes after Close: %v", left)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// isUVMShutdown reports whether a request is a shutdown of the utility VM
// (which ends the connection) rather than of a container.
func isUVMShutdown(typ protocol.MessageType, body []byte) bool {
	if typ != protocol.ShutdownGraceful && typ != protocol.ShutdownForced {
		return false
	}
	var b protocol.RequestBase
	return json.Unmarshal(body, &b) == nil && b.ContainerID == protocol.UVMContainerID
}

// requestTypes are every request the agent knows, and some it does not.
var requestTypes = []protocol.MessageType{
	protocol.Create, protocol.Start, protocol.ShutdownGraceful, protocol.ShutdownForced,
	protocol.ExecuteProcess, protocol.WaitForProcess, protocol.SignalProcess, protocol.ResizeConsole,
	protocol.GetProperties, protocol.ModifySettings, protocol.NegotiateProtocol, protocol.DumpStacks,
	protocol.DeleteContainerState, protocol.Pause, protocol.Resume,
	protocol.KindRequest | 0x00100f01, protocol.ContainerNotification, protocol.Create.Response(), 0,
}

func modify(resourceType, requestType string, settings any) []byte {
	b, _ := json.Marshal(protocol.ModifySettingsRequest{
		RequestBase: protocol.RequestBase{ContainerID: protocol.UVMContainerID},
		Request:     protocol.ModificationRequest{ResourceType: resourceType, RequestType: requestType, Settings: mustJSON(settings)},
	})
	return b
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// addSeeds seeds the corpus: every golden request frame, every request
// type with a bare body for the VM and for a container, and a request per
// resource type with paths in the state root.
func addSeeds(f *testing.F) {
	frames, err := filepath.Glob("../../protocol/testdata/*.frame")
	if err != nil || len(frames) == 0 {
		f.Fatalf("golden frames: %v %v", frames, err)
	}
	for _, p := range frames {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		hdr, err := protocol.DecodeHeader(b, protocol.MaxFrameSize)
		if err != nil {
			f.Fatalf("%s: %v", p, err)
		}
		f.Add(uint32(hdr.Type), b[protocol.HeaderSize:])
	}
	for _, typ := range requestTypes {
		f.Add(uint32(typ), []byte(`{"ContainerId":"`+protocol.UVMContainerID+`"}`))
		f.Add(uint32(typ), []byte(`{"ContainerId":"c1"}`))
		f.Add(uint32(typ), []byte(`{}`))
	}
	ns := "6c3a3c1a-5b0e-4a8a-9c51-2f8e3d4c5b6a"
	for _, m := range []struct {
		rt, op string
		s      any
	}{
		{protocol.ResourceMappedVirtualDisk, "Add", protocol.MappedVirtualDisk{MountPath: stateToken + "/m0", Lun: 1, ReadOnly: true}},
		{protocol.ResourceMappedVirtualDisk, "Remove", protocol.MappedVirtualDisk{MountPath: stateToken + "/m0"}},
		{protocol.ResourceSCSIDevice, "Remove", protocol.SCSIDevice{Controller: 0, Lun: 1}},
		{protocol.ResourceVPMemDevice, "Add", protocol.VPMemDevice{DeviceNumber: 1, MountPath: stateToken + "/p1"}},
		{protocol.ResourceCombinedLayers, "Add", protocol.CombinedLayers{ContainerRootPath: stateToken + "/c/c1/rootfs",
			Layers: []protocol.Layer{{Path: stateToken + "/layers/l1"}}, ScratchPath: stateToken + "/scratch"}},
		{protocol.ResourceCombinedLayers, "Remove", protocol.CombinedLayers{ContainerRootPath: stateToken + "/c/c1/rootfs"}},
		{protocol.ResourceMappedDirectory, "Add", protocol.MappedDirectory{MountPath: stateToken + "/d", ShareName: "share0"}},
		{protocol.ResourceNetworkNamespace, "Add", protocol.NetworkNamespace{ID: ns}},
		{protocol.ResourceNetworkNamespace, "Remove", protocol.NetworkNamespace{ID: ns}},
		{protocol.ResourceNetwork, "Add", protocol.NetworkAdapter{NamespaceID: ns, MacAddress: "00-15-5D-01-02-03",
			IPConfigs: []protocol.IPConfig{{IPAddress: "10.0.0.2", PrefixLength: 24}}}},
		{protocol.ResourceContainerConstraints, "Update", map[string]any{}},
	} {
		f.Add(uint32(protocol.ModifySettings), modify(m.rt, m.op, m.s))
	}
	params, _ := json.Marshal(protocol.ProcessParameters{CommandArgs: []string{"/bin/true"}, CreateInUtilityVM: true,
		CreateStdOutPipe: true, CreateStdErrPipe: true})
	exec, _ := json.Marshal(protocol.ExecuteProcessRequest{RequestBase: protocol.RequestBase{ContainerID: protocol.UVMContainerID},
		Settings: protocol.ExecuteProcessSettings{ProcessParameters: string(params),
			VsockStdioRelaySettings: protocol.VsockStdioRelaySettings{StdOut: 0x40000001, StdErr: 0x40000002}}})
	f.Add(uint32(protocol.ExecuteProcess), exec)
	spec := `{"ociVersion":"1.1.0","process":{"args":["/bin/true"],"cwd":"/"},"root":{"path":"` + stateToken + `/c/c1/rootfs"},` +
		`"linux":{"namespaces":[{"type":"mount"},{"type":"pid"}]}}`
	cfg, _ := json.Marshal(protocol.ContainerConfig{SchemaVersion: protocol.SchemaVersion{Major: 2, Minor: 1},
		OciBundlePath: stateToken + "/c/c1", OciSpecification: json.RawMessage(spec)})
	create, _ := json.Marshal(protocol.CreateRequest{RequestBase: protocol.RequestBase{ContainerID: "c1"}, ContainerConfig: string(cfg)})
	f.Add(uint32(protocol.Create), create)
}

// FuzzAgent feeds one arbitrary request (type, body) to a fresh agent wired
// exactly as cmd/gcs wires it, over its real bridge, mux and handlers, in
// the sandbox TestMain sets up, and checks that:
//   - no handler panics (the bridge would turn one into an "internal
//     error" answer) and nothing else does (the process would die);
//   - a request gets an answer: a response frame of its type with its ID;
//     and after any input the agent still answers (a probe), unless it was
//     asked to shut the VM down, in which case it stops serving;
//   - while the agent holds them, every mount it made is inside its state
//     root (mountinfo against the baseline);
//   - once closed it leaves nothing: mountinfo holds no mount the baseline
//     does not (layers,
//     disks and pod network namespaces are bind or real mounts), the test's
//     network namespace has the same links, no cgroup exists beneath the
//     sandbox's cgroup roots (where CgroupParent and any spec path land),
//     and this process has no children (it is their subreaper, so orphans
//     count too).
//
// Files the agent or a process it starts could write outside the state
// root are refused by the sandbox (read-only mounts), whose set-up
// TestMain checks.
func FuzzAgent(f *testing.F) {
	requireConfined(f)
	addSeeds(f)
	env := newFuzzEnv(f)
	f.Fuzz(func(t *testing.T, typ uint32, body []byte) {
		if len(body) > maxFuzzBody {
			return
		}
		env.run(t, []request{{protocol.MessageType(typ), body}}, false)
	})
}
