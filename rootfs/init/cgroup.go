package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// favorDynmods is the cgroup mount option (Linux 6.0+) that keeps the
// kernel's cgroup_threadgroup_rwsem in its reader-slow mode: moving a
// process into a cgroup, which gcs does for every container init and exec,
// then no longer waits for an RCU grace period (5-15 ms measured on a busy
// two-CPU machine; each container start paid one). Forks and exits take a
// plain read lock instead of the per-CPU fast path, a cost too small to
// see beside a container start.
const favorDynmods = "favordynmods"

// mountCgroup mounts m with favordynmods added to its options, or without
// it on a kernel that does not know the option.
func mountCgroup(m mount) (favored bool, err error) {
	f := m
	f.data = strings.TrimPrefix(m.data+","+favorDynmods, ",")
	if err := f.do(); err == nil {
		return true, nil
	}
	return false, m.do()
}

// mountCgroupV2 mounts the unified hierarchy at root and enables every
// controller it offers for the cgroups below, so gcs's container cgroups
// can use them.
func mountCgroupV2(root string) error {
	favored, err := mountCgroup(mount{"cgroup2", root, "cgroup2", restricted, "", 0o755})
	if err != nil {
		return err
	}
	avail, err := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
	if err != nil {
		return err
	}
	ctl := filepath.Join(root, "cgroup.subtree_control")
	var failed []string
	// One write each: a controller the kernel refuses does not hold back
	// the others.
	for _, c := range strings.Fields(string(avail)) {
		if err := os.WriteFile(ctl, []byte("+"+c), 0); err != nil {
			failed = append(failed, fmt.Sprintf("%s (%v)", c, err))
		}
	}
	enabled, _ := os.ReadFile(ctl)
	logf("cgroup v2 at %s: %s%s", root, strings.TrimSpace(string(enabled)), favoredNote(favored))
	if len(failed) > 0 {
		return fmt.Errorf("could not enable: %s", strings.Join(failed, ", "))
	}
	return nil
}

// mountCgroupV1 mounts a tmpfs at root and one hierarchy per enabled
// controller of procCgroups (/proc/cgroups) below it.
func mountCgroupV1(root, procCgroups string) error {
	list, err := os.ReadFile(procCgroups)
	if err != nil {
		return err
	}
	if err := (mount{"cgroup_root", root, "tmpfs", restricted, "mode=0755", 0o755}).do(); err != nil {
		return err
	}
	var mounted, failed []string
	favored := false
	for _, c := range enabledV1Controllers(string(list)) {
		f, err := mountCgroup(mount{"cgroup", filepath.Join(root, c), "cgroup", restricted, c, 0o755})
		if err != nil {
			failed = append(failed, err.Error())
			continue
		}
		favored = favored || f
		mounted = append(mounted, c)
	}
	// Mount points exist now; the tmpfs above them need not change.
	_ = unix.Mount("", root, "", unix.MS_REMOUNT|unix.MS_RDONLY|restricted, "mode=0755")
	logf("cgroup v1 at %s: %s%s", root, strings.Join(mounted, " "), favoredNote(favored))
	if len(failed) > 0 {
		return fmt.Errorf("%s", strings.Join(failed, "; "))
	}
	return nil
}

func favoredNote(favored bool) string {
	if favored {
		return " (" + favorDynmods + ")"
	}
	return ""
}

// enabledV1Controllers reads /proc/cgroups: "#subsys_name hierarchy
// num_cgroups enabled" then one line per controller.
func enabledV1Controllers(procCgroups string) []string {
	var out []string
	for _, line := range strings.Split(procCgroups, "\n") {
		f := strings.Fields(line)
		if len(f) != 4 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if f[3] == "1" {
			out = append(out, f[0])
		}
	}
	return out
}
