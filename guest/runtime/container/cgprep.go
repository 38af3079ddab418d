package container

import (
	"errors"
	"io/fs"
	"os"

	"github.com/opencontainers/cgroups"
	fscg "github.com/opencontainers/cgroups/fs"
	"github.com/opencontainers/cgroups/fs2"
	"github.com/opencontainers/runc/libcontainer"
)

// cgroupPrep makes a created container's cgroup directories while the host
// sends the start request and the agent prepares the start, instead of
// while the container's init waits for its bootstrap data.
//
// libcontainer's start creates the container's cgroups and moves the init
// into them before it sends the init its bootstrap data, and the init
// waits for all of it. Under cgroup v1 that is a mkdir in each hierarchy
// (ten on the test hosts' hybrid layout), each the costliest system call
// of the start's parent side. Made ahead, libcontainer's Apply finds each directory there
// (its MkdirAll stops at the stat it always makes) and does everything else
// as before: cpuset's copy of the parent's cpus and mems, the move of the
// init, and later the limits and device rules (Set), which it checks. So
// nothing about what the container gets changes, only when the directories
// appear; and no work is added, none is done twice (a plain mkdir per
// directory, no stat before it), which matters on a busy machine where
// work moved off the critical path still takes the CPU from it.
//
// The directories are the paths libcontainer's Create chose (State's
// CgroupPaths); its Destroy removes them, the container started or not.
type cgroupPrep struct {
	done chan struct{}
}

// prepareCgroups starts making the cgroup directories paths names (the
// State's CgroupPaths of a created container); wait returns once that is
// over. A failure is left for libcontainer's start to meet and report.
func prepareCgroups(paths map[string]string) *cgroupPrep {
	p := &cgroupPrep{done: make(chan struct{})}
	dirs := make([]string, 0, len(paths))
	for _, d := range paths {
		if d != "" {
			dirs = append(dirs, d)
		}
	}
	go func() {
		defer close(p.done)
		for _, d := range dirs {
			err := os.Mkdir(d, 0o755)
			if errors.Is(err, fs.ErrNotExist) {
				_ = os.MkdirAll(d, 0o755) // the parent's first container
			}
		}
	}()
	return p
}

// cgroupPaths is where libcontainer put lc's cgroups: per v1 controller,
// or the unified path under key "".
func cgroupPaths(lc *libcontainer.Container) map[string]string {
	st, err := lc.State()
	if err != nil {
		return nil
	}
	return st.CgroupPaths
}

// freezerPath is the cgroup whose freezer state tells whether a container
// is paused: v1's freezer controller's, or the unified one.
func freezerPath(paths map[string]string) string {
	if cgroups.IsCgroup2UnifiedMode() {
		return paths[""]
	}
	return paths["freezer"]
}

// frozen reads the freezer state of cgroup dir (see freezerPath) as
// libcontainer's Status does to tell a paused container.
func frozen(dir string) (bool, error) {
	var st cgroups.FreezerState
	var err error
	if cgroups.IsCgroup2UnifiedMode() {
		var m *fs2.Manager
		if m, err = fs2.NewManager(&cgroups.Cgroup{Resources: &cgroups.Resources{}}, dir); err == nil {
			st, err = m.GetFreezerState()
		}
	} else {
		st, err = (&fscg.FreezerGroup{}).GetState(dir)
	}
	return st == cgroups.Frozen, err
}

// wait blocks until the directories are made; nil waits for nothing.
func (p *cgroupPrep) wait() {
	if p != nil {
		<-p.done
	}
}
