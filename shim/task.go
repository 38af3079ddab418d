package shim

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// maxSpecSize bounds a bundle's config.json.
const maxSpecSize = 4 << 20

// shimTask is one containerd task: a container in the VM, its init and
// execs, and the root filesystem it holds.
type shimTask struct {
	id     string
	bundle string
	spec   *specs.Spec
	pod    podTask
	held   []podResource // the pod's network and /dev/shm: a sandbox's
	gc     guestContainer
	init   *process

	mu     sync.Mutex
	execs  map[string]*process
	paused bool
}

// process returns the init ("") or the exec execID.
func (t *shimTask) process(execID string) (*process, error) {
	if execID == "" {
		return t.init, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.execs[execID]
	if !ok {
		return nil, fmt.Errorf("exec %q in task %q: %w", execID, t.id, errdefs.ErrNotFound)
	}
	return p, nil
}

// readSpec reads the bundle's OCI spec.
func readSpec(bundle string) (*specs.Spec, error) {
	f, err := os.Open(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() > maxSpecSize {
		return nil, fmt.Errorf("%s is %d bytes, more than %d: %w", f.Name(), st.Size(), maxSpecSize, errdefs.ErrInvalidArgument)
	}
	var s specs.Spec
	if err := json.NewDecoder(f).Decode(&s); err != nil {
		return nil, fmt.Errorf("decode %s: %w: %w", f.Name(), err, errdefs.ErrInvalidArgument)
	}
	return &s, nil
}

// hostBind is a bind mount of a host path, which the guest sees through a
// Plan9 share of a directory.
type hostBind struct {
	index    int    // in the guest spec's Mounts
	dir      string // the host directory shared
	file     string // the file in dir the mount names; "" for dir itself
	readOnly bool
}

// guestSpec rewrites a host spec for the guest: the root is the one the
// guest assembles; hooks are dropped (they would run on no host); a pod
// task's host namespaces and /dev/shm become the pod's in the guest
// (rewritePod); the writable host mounts under a read-only bind mount
// stay writable (withWritableSubmounts); host bind mounts are returned for sharing (their sources
// are rewritten once shared); other host namespace paths are refused.
func guestSpec(s *specs.Spec, root string, pod podTask) (*specs.Spec, []hostBind, error) {
	g := *s
	g.Root = &specs.Root{Path: root, Readonly: s.Root != nil && s.Root.Readonly}
	g.Hooks = nil
	g.Mounts = make([]specs.Mount, 0, len(s.Mounts))
	for _, m := range s.Mounts {
		g.Mounts = append(g.Mounts, withWritableSubmounts(mountInfo, m)...)
	}
	if err := rewritePod(&g, pod); err != nil {
		return nil, nil, err
	}
	var binds []hostBind
	for i, m := range g.Mounts {
		if !isHostBind(m) || isGuestBind(m) {
			continue
		}
		st, err := os.Stat(m.Source)
		if err != nil {
			return nil, nil, fmt.Errorf("bind mount at %s: %w: %w", m.Destination, err, errdefs.ErrInvalidArgument)
		}
		b := hostBind{index: i, dir: m.Source}
		if !st.IsDir() {
			// A file is shared through its directory.
			b.dir, b.file = filepath.Dir(m.Source), filepath.Base(m.Source)
		}
		for _, o := range m.Options {
			if o == "ro" || o == "rro" {
				b.readOnly = true
			}
		}
		binds = append(binds, b)
	}
	return &g, binds, nil
}

func isHostBind(m specs.Mount) bool {
	if m.Type != "bind" && m.Type != "rbind" && m.Type != "" && m.Type != "none" {
		return false
	}
	for _, o := range m.Options {
		if o == "bind" || o == "rbind" {
			return true
		}
	}
	return m.Type == "bind" || m.Type == "rbind"
}
