package container

import (
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"
)

// cgroupWarmer pays the kernel's cgroup-migration grace period ahead of a
// container start.
//
// Moving a process into a cgroup (writing cgroup.procs, which libcontainer
// does for every init and, under cgroup v1, every exec) takes the kernel's
// global cgroup_threadgroup_rwsem for writing. When no migration happened
// in the last RCU grace period, that write waits for a full grace period
// (rcu_sync_enter): measured here at 5.5 ms median on a busy two-CPU
// machine, 26 µs for a second write right after, and it sits on the
// critical path, with the container's init blocked until it is done. A
// no-op migration — the agent into the cgroup it is already in — started
// as soon as a container is created or an exec arrives lets that grace
// period elapse while the agent prepares the bundle and the host sends the
// start. Writes made within one grace period of it pass at once. Hosts
// whose cgroup hierarchies are mounted with favordynmods (the utility VM's
// init does so) have no such wait; there the warm-up is one cheap write.
type cgroupWarmer struct {
	h    hierarchy // where the agent's cgroup is looked up; zero: no warming
	busy atomic.Bool
}

// hierarchy is one mounted cgroup hierarchy: the key of its line in
// /proc/self/cgroup ("" for cgroup v2, else a v1 controller), where it is
// mounted and which of its cgroups the mount shows as its root.
type hierarchy struct {
	key, mount, root string
}

// warm starts a no-op migration unless one is under way.
func (w *cgroupWarmer) warm() {
	if w.h.mount == "" || !w.busy.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer w.busy.Store(false)
		procs, ok := w.h.ownProcs("/proc/self/cgroup")
		if !ok {
			return
		}
		fd, err := unix.Open(procs, unix.O_WRONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return
		}
		// "0" is the writing process: the agent moves to where it is.
		_, _ = unix.Write(fd, []byte("0"))
		unix.Close(fd)
	}()
}

// ownProcs is the cgroup.procs file of the agent's cgroup in h, looked up
// afresh each time: had anyone moved the agent, the no-op must follow.
func (h hierarchy) ownProcs(selfCgroup string) (string, bool) {
	m, err := cgroups.ParseCgroupFile(selfCgroup)
	if err != nil {
		return "", false
	}
	p, ok := m[h.key]
	if !ok {
		return "", false
	}
	rel, err := filepath.Rel(h.root, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", false // our cgroup is not visible under this mount
	}
	return filepath.Join(h.mount, rel, "cgroup.procs"), true
}

// ownHierarchy picks the hierarchy the warmer writes in: the unified one
// under cgroup v2, else the first v1 controller mounted (the lock is
// global, any hierarchy will do).
func ownHierarchy() hierarchy {
	if cgroups.IsCgroup2UnifiedMode() {
		return hierarchy{key: "", mount: "/sys/fs/cgroup", root: "/"}
	}
	for _, ss := range []string{"pids", "devices", "memory", "cpu", "freezer"} {
		if mnt, root, err := cgroups.FindCgroupMountpointAndRoot("", ss); err == nil {
			return hierarchy{key: ss, mount: mnt, root: root}
		}
	}
	return hierarchy{}
}
