package container

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/uvmgcs/gcs/protocol"
)

func TestValidateID(t *testing.T) {
	for _, id := range []string{"a", "pod-1_x.y", strings.Repeat("a", maxIDLength)} {
		if err := ValidateID(id); err != nil {
			t.Errorf("ValidateID(%q) = %v", id, err)
		}
	}
	for _, id := range []string{"", ".", "..", "../x", "a/b", "-a", ".hidden", "a b", strings.Repeat("a", maxIDLength+1), protocol.UVMContainerID} {
		if err := ValidateID(id); !errors.Is(err, protocol.HrInvalidArg) {
			t.Errorf("ValidateID(%q) = %v, want E_INVALIDARG", id, err)
		}
	}
}

func newTestManager(t *testing.T) *Manager {
	t.Helper()
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(resolv, []byte("nameserver 10.0.0.1\n"), 0o644)
	m, err := New(Config{StateRoot: t.TempDir(), CgroupParent: "/test", ResolvConf: resolv})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func config(t *testing.T, s *specs.Spec) *protocol.ContainerConfig {
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return &protocol.ContainerConfig{SchemaVersion: protocol.SchemaVersion{Major: 2, Minor: 1}, OciSpecification: b}
}

func TestPrepare(t *testing.T) {
	m := newTestManager(t)
	rootfs := filepath.Join(m.cfg.StateRoot, "layers", "r")
	os.MkdirAll(rootfs, 0o755)
	s := specconv.Example()
	s.Root.Path = rootfs
	s.Hostname = "h1"
	b, err := m.prepare(context.Background(), "c1", config(t, s))
	if err != nil {
		t.Fatal(err)
	}
	if got := b.spec.Linux.CgroupsPath; got != "/test/c1" {
		t.Errorf("cgroups path %q", got)
	}
	if b.config.Rootfs != rootfs || b.config.Hostname != "h1" {
		t.Errorf("config rootfs %q hostname %q", b.config.Rootfs, b.config.Hostname)
	}
	hosts, _ := os.ReadFile(filepath.Join(b.dir, "hosts"))
	resolv, _ := os.ReadFile(filepath.Join(b.dir, "resolv.conf"))
	if !strings.Contains(string(hosts), "h1") || string(resolv) != "nameserver 10.0.0.1\n" {
		t.Errorf("hosts %q resolv %q", hosts, resolv)
	}
	mounted := map[string]bool{}
	for _, mt := range b.spec.Mounts {
		mounted[mt.Destination] = mt.Source == filepath.Join(b.dir, filepath.Base(mt.Destination))
	}
	for _, f := range []string{"/etc/hosts", "/etc/resolv.conf", "/etc/hostname"} {
		if !mounted[f] {
			t.Errorf("%s is not bound from the bundle", f)
		}
	}

	bad := func(name string, mutate func(*specs.Spec), want protocol.HResult) {
		t.Helper()
		s := specconv.Example()
		s.Root.Path = rootfs
		mutate(s)
		if _, err := m.prepare(context.Background(), "bad", config(t, s)); !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", name, err, want)
		}
		if _, err := os.Stat(filepath.Join(m.cfg.StateRoot, "c", "bad")); !os.IsNotExist(err) {
			t.Errorf("%s: bundle directory left behind", name)
		}
	}
	bad("rootfs outside", func(s *specs.Spec) { s.Root.Path = "/" }, protocol.HrInvalidArg)
	bad("rootfs symlink out", func(s *specs.Spec) {
		l := filepath.Join(m.cfg.StateRoot, "link")
		os.Symlink("/usr", l)
		s.Root.Path = l
	}, protocol.HrInvalidArg)
	bad("missing rootfs", func(s *specs.Spec) { s.Root.Path = rootfs + "/nope" }, protocol.HrInvalidArg)
	bad("no process", func(s *specs.Spec) { s.Process = nil }, protocol.HrInvalidArg)
	bad("relative cgroups path", func(s *specs.Spec) { s.Linux.CgroupsPath = "x/../y" }, protocol.HrInvalidArg)
	bad("tiny memory", func(s *specs.Spec) {
		s.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(1000))}}
	}, protocol.HrInvalidArg)
	bad("workload without sandbox", func(s *specs.Spec) {
		s.Annotations = map[string]string{annotationContainerType: containerTypeContainer, annotationSandboxID: "nope"}
	}, protocol.HrVmcomputeSystemNotFound)

	c := config(t, specconv.Example())
	c.SchemaVersion.Major = 1
	if _, err := m.prepare(context.Background(), "v1", c); !errors.Is(err, protocol.HrInvalidArg) {
		t.Errorf("schema 1: %v", err)
	}
	c.SchemaVersion.Major, c.OciSpecification = 2, []byte(`{"process":`)
	if _, err := m.prepare(context.Background(), "badjson", c); !errors.Is(err, protocol.HrVmcomputeInvalidJSON) {
		t.Errorf("bad json: %v", err)
	}
}

func ptr[T any](v T) *T { return &v }

func TestNewLibcontainerProcess(t *testing.T) {
	p, err := newLibcontainerProcess(&specs.Process{
		Args:    []string{"x"},
		User:    specs.User{UID: 5, GID: 6, AdditionalGids: []uint32{7}},
		Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 10, Soft: 9}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if p.UID != 5 || p.GID != 6 || len(p.AdditionalGroups) != 1 || p.Cwd != "/" || p.Rlimits[0].Soft != 9 ||
		len(p.Env) != 1 || !strings.HasPrefix(p.Env[0], "PATH=") {
		t.Fatalf("process %+v", p)
	}
	if _, err := newLibcontainerProcess(&specs.Process{Args: []string{"x"}, Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_BOGUS"}}}); !errors.Is(err, protocol.HrInvalidArg) {
		t.Fatalf("bogus rlimit: %v", err)
	}
	if _, err := newLibcontainerProcess(&specs.Process{}); !errors.Is(err, protocol.HrInvalidArg) {
		t.Fatalf("no args: %v", err)
	}
}

func TestMetrics(t *testing.T) {
	var s cgroups.Stats
	s.CpuStats.CpuUsage.TotalUsage = 10
	s.MemoryStats.Usage = cgroups.MemoryData{Usage: 20, Limit: 30}
	s.PidsStats.Current = 2
	s.BlkioStats.IoServiceBytesRecursive = []cgroups.BlkioStatEntry{{Major: 8, Op: "Read", Value: 4}}
	b, _ := json.Marshal(metrics(&s))
	for _, want := range []string{`"cpu":{"usage":{"total":10}`, `"usage":{"limit":30,"usage":20}`, `"pids":{"current":2}`, `"io_service_bytes_recursive":[{"op":"Read","major":8,"value":4}]`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics %s lacks %s", b, want)
		}
	}
}

// TestMemoryStat: memory.stat's keys of cgroup v2 reach cgroup v1's
// fields, which containerd's CRI reads (the working set is usage less
// total_inactive_file).
func TestMemoryStat(t *testing.T) {
	v2 := memoryStat(cgroups.MemoryStats{Stats: map[string]uint64{"anon": 5, "file_mapped": 6, "inactive_file": 7, "pgfault": 8, "kernel": 9}})
	if v2.RSS != 5 || v2.MappedFile != 6 || v2.TotalInactiveFile != 7 || v2.InactiveFile != 7 || v2.PgFault != 8 || v2.Kernel.Usage != 9 {
		t.Errorf("v2: %+v kernel %+v", v2, v2.Kernel)
	}
	v1 := memoryStat(cgroups.MemoryStats{KernelUsage: cgroups.MemoryData{Usage: 3}, Stats: map[string]uint64{"rss": 1, "inactive_file": 2, "total_inactive_file": 4}})
	if v1.RSS != 1 || v1.InactiveFile != 2 || v1.TotalInactiveFile != 4 || v1.Kernel.Usage != 3 {
		t.Errorf("v1: %+v kernel %+v", v1, v1.Kernel)
	}
	b, _ := json.Marshal(v1)
	for _, want := range []string{`"rss":1`, `"total_inactive_file":4`, `"kernel":{"usage":3}`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("memory stat %s lacks %s", b, want)
		}
	}
}

func TestUnmountUnder(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIP (loud): mounting needs root")
	}
	dir := t.TempDir()
	inner := filepath.Join(dir, "rootfs")
	os.MkdirAll(inner, 0o755)
	if err := unix.Mount("tmpfs", inner, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(inner, unix.MNT_DETACH) })
	os.WriteFile(filepath.Join(inner, "data"), []byte("x"), 0o644)
	if err := unmountUnder(dir); err != nil {
		t.Fatal(err)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), inner) {
		t.Fatal("still mounted")
	}
	if got := unescapeMountPath(`/a\040b`); got != "/a b" {
		t.Fatalf("unescape: %q", got)
	}
}

func TestRootIsInitramfs(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct {
		info string
		want bool
	}{
		"initramfs": {"1 1 0:2 / / rw - rootfs rootfs rw\n22 1 0:21 / /proc rw - proc proc rw\n", true},
		"disk":      {"21 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n", false},
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(tc.info), 0o644)
		if got := RootIsInitramfs(p); got != tc.want {
			t.Errorf("%s: %v", name, got)
		}
	}
}
