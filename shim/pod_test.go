package shim

import (
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// criSpec is a spec as containerd's CRI plugin writes it for a pod's task
// (the parts the guest rewriting reads).
func criSpec(typ, sandboxID string, ns []specs.LinuxNamespace, mounts ...specs.Mount) *specs.Spec {
	return &specs.Spec{
		Root: &specs.Root{Path: "rootfs"},
		Annotations: map[string]string{
			annotationContainerType: typ,
			annotationSandboxID:     sandboxID,
		},
		Mounts: mounts,
		Linux:  &specs.Linux{Namespaces: ns, CgroupsPath: "/kubepods/pod1/" + sandboxID},
	}
}

func TestRewritePodSandbox(t *testing.T) {
	resolv := t.TempDir()
	s := criSpec(containerTypeSandbox, "sb1", []specs.LinuxNamespace{
		{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace}, {Type: specs.MountNamespace},
		{Type: specs.NetworkNamespace, Path: "/var/run/netns/cni-1234"},
	},
		specs.Mount{Destination: "/dev/shm", Type: "bind", Source: "/run/containerd/io.containerd.grpc.v1.cri/sandboxes/sb1/shm", Options: []string{"rbind", "ro", "nosuid", "nodev", "noexec"}},
		specs.Mount{Destination: "/etc/resolv.conf", Type: "bind", Source: resolv, Options: []string{"rbind", "ro"}},
	)
	pod := podOf(s)
	if pod.role != podSandbox || pod.sandboxID != "sb1" || netnsPath(s) != "/var/run/netns/cni-1234" || !hasShmBind(s) {
		t.Fatalf("podOf %+v, netns %q", pod, netnsPath(s))
	}
	pod.netNS = podNetworkID("sb1")
	g, binds, err := guestSpec(s, "/run/gcs/c/sb1/rootfs", pod)
	if err != nil {
		t.Fatal(err)
	}
	wantNS := []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace}, {Type: specs.MountNamespace}, {Type: specs.NetworkNamespace}}
	if !reflect.DeepEqual(g.Linux.Namespaces, wantNS) {
		t.Errorf("namespaces %+v, want %+v", g.Linux.Namespaces, wantNS)
	}
	if g.Windows == nil || g.Windows.Network == nil || g.Windows.Network.NetworkNamespace != pod.netNS {
		t.Errorf("the sandbox does not join the pod's guest network namespace %s: %+v", pod.netNS, g.Windows)
	}
	wantShm := specs.Mount{Destination: "/dev/shm", Type: "bind", Source: "/run/uvmgcs/pods/sb1/shm", Options: []string{"rbind", "ro", "nosuid", "nodev", "noexec"}}
	if !reflect.DeepEqual(g.Mounts[0], wantShm) {
		t.Errorf("/dev/shm %+v, want %+v", g.Mounts[0], wantShm)
	}
	// resolv.conf (CRI's, with the pod's DNS options) is shared.
	if want := []hostBind{{index: 1, dir: resolv, readOnly: true}}; !reflect.DeepEqual(binds, want) {
		t.Errorf("binds %+v, want %+v", binds, want)
	}
	if g.Linux.CgroupsPath != "/kubepods/pod1/sb1" {
		t.Errorf("cgroups path %q", g.Linux.CgroupsPath)
	}
	// The host's spec is untouched.
	if s.Linux.Namespaces[4].Path == "" || s.Mounts[0].Type != "bind" || s.Mounts[0].Source == wantShm.Source || s.Windows != nil {
		t.Errorf("the host spec changed: %+v", s)
	}

	// A pod without a network attached (host network) keeps no path and
	// joins no guest namespace.
	g, _, err = guestSpec(s, "/r", podTask{role: podSandbox, sandboxID: "sb1"})
	if err != nil || g.Windows != nil {
		t.Errorf("sandbox without a pod network: %+v %v", g.Windows, err)
	}
}

func TestRewritePodWorkload(t *testing.T) {
	hostNS := []specs.LinuxNamespace{
		{Type: specs.PIDNamespace, Path: "/proc/4242/ns/pid"},
		{Type: specs.IPCNamespace, Path: "/proc/4242/ns/ipc"},
		{Type: specs.UTSNamespace, Path: "/proc/4242/ns/uts"},
		{Type: specs.MountNamespace},
		{Type: specs.NetworkNamespace, Path: "/proc/4242/ns/net"},
	}
	s := criSpec(containerTypeContainer, "sb1", hostNS,
		specs.Mount{Destination: "/dev/shm", Type: "bind", Source: "/run/containerd/io.containerd.grpc.v1.cri/sandboxes/sb1/shm", Options: []string{"rbind", "rprivate", "rw"}})
	s.Linux.CgroupsPath = "kubepods-besteffort.slice:cri-containerd:c1" // systemd's
	pod := podOf(s)
	if pod.role != podWorkload || pod.sandboxID != "sb1" {
		t.Fatalf("podOf %+v", pod)
	}
	// A shared pid namespace needs the sandbox running.
	if _, _, err := guestSpec(s, "/r", pod); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("workload joining the pid namespace of a sandbox not running: %v, want FailedPrecondition", err)
	}
	pod.sandboxPid = 17
	g, binds, err := guestSpec(s, "/r", pod)
	if err != nil {
		t.Fatal(err)
	}
	want := []specs.LinuxNamespace{
		{Type: specs.PIDNamespace, Path: "/proc/17/ns/pid"},
		{Type: specs.IPCNamespace}, {Type: specs.UTSNamespace}, {Type: specs.MountNamespace}, {Type: specs.NetworkNamespace},
	}
	if !reflect.DeepEqual(g.Linux.Namespaces, want) {
		t.Errorf("namespaces %+v, want %+v", g.Linux.Namespaces, want)
	}
	if m := g.Mounts[0]; m.Source != "/run/uvmgcs/pods/sb1/shm" || m.Type != "bind" || !reflect.DeepEqual(m.Options, []string{"rbind", "rprivate", "rw"}) {
		t.Errorf("/dev/shm %+v, want a bind of the pod's tmpfs", m)
	}
	if len(binds) != 0 {
		t.Errorf("the pod's /dev/shm is shared from the host: %+v", binds)
	}
	if g.Linux.CgroupsPath != "" || g.Windows != nil {
		t.Errorf("cgroups path %q (want the guest's own), windows %+v", g.Linux.CgroupsPath, g.Windows)
	}

	// Namespaces other than the pod's are the host's: refused.
	for _, ns := range []specs.LinuxNamespace{{Type: specs.UserNamespace, Path: "/proc/4242/ns/user"}, {Type: specs.MountNamespace, Path: "/proc/1/ns/mnt"}} {
		bad := criSpec(containerTypeContainer, "sb1", []specs.LinuxNamespace{ns})
		if _, _, err := guestSpec(bad, "/r", podTask{role: podWorkload, sandboxID: "sb1", sandboxPid: 17}); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s namespace path: %v, want InvalidArgument", ns.Type, err)
		}
	}
	// Outside a pod every host namespace path is refused, and /dev/shm
	// binds are the host's.
	plain := criSpec("", "", []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: "/proc/1/ns/net"}})
	if podOf(plain).role != notPod {
		t.Fatalf("a task without CRI annotations is a pod's: %+v", podOf(plain))
	}
	if _, _, err := guestSpec(plain, "/r", podOf(plain)); !errdefs.IsInvalidArgument(err) {
		t.Errorf("a task's host network namespace: %v, want InvalidArgument", err)
	}
}

func TestPodValidate(t *testing.T) {
	for _, c := range []struct {
		p    podTask
		task string
		ok   bool
	}{
		{podTask{}, "x", true},
		{podTask{role: podSandbox, sandboxID: "sb1"}, "sb1", true},
		{podTask{role: podSandbox, sandboxID: "sb2"}, "sb1", false},
		{podTask{role: podWorkload, sandboxID: "sb1"}, "c1", true},
		{podTask{role: podWorkload, sandboxID: "../../etc"}, "c1", false},
		{podTask{role: podSandbox, sandboxID: ""}, "", false},
	} {
		if err := c.p.validate(c.task); (err == nil) != c.ok || (err != nil && !errdefs.IsInvalidArgument(err)) {
			t.Errorf("%+v of task %q: %v", c.p, c.task, err)
		}
	}
}

func TestPodSize(t *testing.T) {
	cfg := Config{MemoryMiB: 512, CPUs: 1}
	s := criSpec(containerTypeSandbox, "sb1", nil)
	if m, c := podSize(cfg, s); m != 512 || c != 1 {
		t.Errorf("a pod without resources: %d MiB %d CPUs, want the configured 512 1", m, c)
	}
	s.Annotations[annotationSandboxMemory] = "100000000" // 95.4 MiB
	s.Annotations[annotationSandboxCPUQuota] = "150000"
	s.Annotations[annotationSandboxCPUPer] = "100000"
	wantCPUs := min(1+2, max(1, runtime.NumCPU()))
	if m, c := podSize(cfg, s); m != 512+96 || c != wantCPUs {
		t.Errorf("a pod of 100 MB and 1.5 CPUs: %d MiB %d CPUs, want %d %d", m, c, 512+96, wantCPUs)
	}
	s.Annotations[annotationSandboxMemory] = "-5"
	s.Annotations[annotationSandboxCPUQuota] = "x"
	if m, c := podSize(cfg, s); m != 512 || c != 1 {
		t.Errorf("bad annotations: %d MiB %d CPUs, want the configured 512 1", m, c)
	}
	s.Annotations[annotationSandboxMemory] = "9223372036854775807"
	if m, _ := podSize(cfg, s); m != maxMemoryMiB {
		t.Errorf("a huge pod: %d MiB, want the bound %d", m, maxMemoryMiB)
	}
	// A workload does not size the VM.
	w := criSpec(containerTypeContainer, "sb1", nil)
	w.Annotations[annotationSandboxMemory] = "100000000"
	if m, _ := podSize(cfg, w); m != 512 {
		t.Errorf("a workload sized the VM: %d MiB", m)
	}
}

// TestWritableSubmounts: a read-only rbind of a host directory keeps the
// writable mounts under it writable (runc's non-recursive read-only); a
// read-only submount, rro, a plain bind or a writable bind add nothing.
func TestWritableSubmounts(t *testing.T) {
	dir := t.TempDir()
	table := filepath.Join(t.TempDir(), "mountinfo")
	os.WriteFile(table, []byte(strings.Join([]string{
		"22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/sda1 rw",
		"90 22 0:50 / " + dir + "/tmp\\040fs rw,relatime - tmpfs tmpfs rw",
		"91 90 0:51 / " + dir + "/tmp\\040fs/deeper rw,relatime - tmpfs tmpfs rw",
		"92 22 0:52 / " + dir + "/ro ro,relatime - tmpfs tmpfs ro",
		"93 22 0:53 / " + dir + "-other rw,relatime - tmpfs tmpfs rw",
	}, "\n")+"\n"), 0o644)
	m := specs.Mount{Destination: "/mnt", Type: "bind", Source: dir, Options: []string{"rbind", "ro", "rprivate"}}
	got := withWritableSubmounts(table, m)
	want := []specs.Mount{m,
		{Destination: "/mnt/tmp fs", Type: "bind", Source: dir + "/tmp fs", Options: []string{"rbind", "rprivate"}},
		{Destination: "/mnt/tmp fs/deeper", Type: "bind", Source: dir + "/tmp fs/deeper", Options: []string{"rbind", "rprivate"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	for _, opts := range [][]string{{"rbind", "rro"}, {"bind", "ro"}, {"rbind", "rw"}} {
		m.Options = opts
		if got := withWritableSubmounts(table, m); len(got) != 1 {
			t.Errorf("options %v: %+v", opts, got)
		}
	}
	if got := withWritableSubmounts(filepath.Join(dir, "no-table"), specs.Mount{Destination: "/mnt", Type: "bind", Source: dir, Options: []string{"rbind", "ro"}}); len(got) != 1 {
		t.Errorf("an unreadable mount table: %+v", got)
	}
}
