package reverse

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// hierarchy is a cgroup v1 hierarchy mounted on this host.
type hierarchy struct {
	mountpoint string
	opts       string // the mount's controllers: "cpu", "name=systemd"
	own        string // this process's cgroup in it, as a directory
}

// v1Hierarchies lists the cgroup v1 hierarchies and this process's cgroup
// in each.
func v1Hierarchies() ([]hierarchy, error) {
	own := map[string]string{} // sorted controller list → path
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		parts := strings.SplitN(s.Text(), ":", 3)
		if len(parts) == 3 && parts[1] != "" {
			own[sortedList(parts[1])] = parts[2]
		}
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var hs []hierarchy
	for _, line := range strings.Split(string(mi), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		fields, pfields := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 5 || len(pfields) < 3 || pfields[0] != "cgroup" {
			continue
		}
		var ctrls []string
		for _, o := range strings.Split(pfields[2], ",") {
			if o != "rw" && o != "ro" && !strings.HasPrefix(o, "clone_children") && !strings.HasPrefix(o, "release_agent") && o != "noprefix" && o != "xattr" {
				ctrls = append(ctrls, o)
			}
		}
		opts := strings.Join(ctrls, ",")
		p, ok := own[sortedList(opts)]
		if !ok {
			return nil, fmt.Errorf("no cgroup of this process in hierarchy %s", opts)
		}
		rel, err := filepath.Rel(fields[3], p)
		if err != nil || strings.HasPrefix(rel, "..") {
			return nil, fmt.Errorf("cgroup %s is outside the mount of %s", p, fields[4])
		}
		hs = append(hs, hierarchy{mountpoint: fields[4], opts: opts, own: filepath.Join(fields[4], rel)})
	}
	if len(hs) == 0 {
		return nil, errors.New("no cgroup v1 hierarchy is mounted")
	}
	return hs, nil
}

func sortedList(s string) string {
	l := strings.Split(s, ",")
	slices.Sort(l)
	return strings.Join(l, ",")
}

// cgroupTree is a cgroup of this run's own in every v1 hierarchy: the guest
// runs in a cgroup namespace rooted there, so its "/gcs", "/pods" and
// containers' cgroups are this tree's children, and removing the tree
// leaves nothing behind.
type cgroupTree struct {
	hs   []hierarchy
	dirs []string
}

func newCgroupTree(name string) (*cgroupTree, error) {
	hs, err := v1Hierarchies()
	if err != nil {
		return nil, err
	}
	t := &cgroupTree{hs: hs}
	for _, h := range hs {
		d := filepath.Join(h.own, name)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.remove()
			return nil, err
		}
		t.dirs = append(t.dirs, d)
		if strings.Contains(","+h.opts+",", ",cpuset,") {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				b, err := os.ReadFile(filepath.Join(h.own, f))
				if err == nil {
					err = os.WriteFile(filepath.Join(d, f), b, 0)
				}
				if err != nil {
					t.remove()
					return nil, fmt.Errorf("cpuset: %w", err)
				}
			}
		}
	}
	return t, nil
}

// enter moves this process into the tree (every hierarchy).
func (t *cgroupTree) enter() error {
	pid := []byte(strconv.Itoa(os.Getpid()))
	for _, d := range t.dirs {
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), pid, 0); err != nil {
			return fmt.Errorf("enter %s: %w", d, err)
		}
	}
	return nil
}

// pids lists every process in the tree.
func (t *cgroupTree) pids() []int {
	var pids []int
	if len(t.dirs) == 0 {
		return nil
	}
	_ = filepath.WalkDir(t.dirs[0], func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Name() != "cgroup.procs" {
			return nil
		}
		b, _ := os.ReadFile(p)
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				pids = append(pids, n)
			}
		}
		return nil
	})
	return pids
}

// remove kills whatever still runs in the tree and removes it; it returns
// what it could not remove.
func (t *cgroupTree) remove() error {
	deadline := time.Now().Add(10 * time.Second)
	for pids := t.pids(); len(pids) > 0 && time.Now().Before(deadline); pids = t.pids() {
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var errs []error
	for _, d := range t.dirs {
		var sub []string
		_ = filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				sub = append(sub, p)
			}
			return nil
		})
		slices.Reverse(sub) // children first
		for _, s := range sub {
			var err error
			for i := 0; i < 50; i++ { // a killed task leaves its cgroup a moment later
				if err = os.Remove(s); err == nil || errors.Is(err, fs.ErrNotExist) {
					err = nil
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
