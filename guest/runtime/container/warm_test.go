package container

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestOwnProcs(t *testing.T) {
	self := filepath.Join(t.TempDir(), "cgroup")
	if err := os.WriteFile(self, []byte("12:pids:/a/b\n11:cpu,cpuacct:/a\n0::/user.slice/x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		h    hierarchy
		want string
	}{
		{hierarchy{"pids", "/sys/fs/cgroup/pids", "/"}, "/sys/fs/cgroup/pids/a/b/cgroup.procs"},
		{hierarchy{"pids", "/sys/fs/cgroup/pids", "/a"}, "/sys/fs/cgroup/pids/b/cgroup.procs"},
		{hierarchy{"pids", "/sys/fs/cgroup/pids", "/other"}, ""},
		{hierarchy{"cpuacct", "/sys/fs/cgroup/cpuacct", "/"}, "/sys/fs/cgroup/cpuacct/a/cgroup.procs"},
		{hierarchy{"", "/sys/fs/cgroup", "/"}, "/sys/fs/cgroup/user.slice/x/cgroup.procs"},
		{hierarchy{"memory", "/sys/fs/cgroup/memory", "/"}, ""},
	} {
		got, ok := tc.h.ownProcs(self)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("%+v: %q %v, want %q", tc.h, got, ok, tc.want)
		}
	}
}

// TestWarmLeavesCgroup: the warm-up moves this process nowhere.
func TestWarmLeavesCgroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIP (loud): writing cgroup.procs needs root")
	}
	before, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	w := &cgroupWarmer{h: ownHierarchy()}
	if w.h.mount == "" {
		t.Fatal("no cgroup hierarchy found")
	}
	w.warm()
	deadline := time.Now().Add(10 * time.Second)
	for w.busy.Load() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if w.busy.Load() {
		t.Fatal("warm-up did not finish")
	}
	after, _ := os.ReadFile("/proc/self/cgroup")
	if string(before) != string(after) {
		t.Fatalf("cgroups changed:\n%s\n->\n%s", before, after)
	}
}
