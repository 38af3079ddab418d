package shim

import (
	"errors"
	"fmt"
	"path"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// vmCgroup is the host cgroup a pod's VM runs in: the sandbox's cgroups
// path, as kata's sandbox_cgroup_only does. The pod's usage on the node is
// the VM's, under the pod's cgroup parent, which containerd's pod stats
// read.
type vmCgroup interface {
	// Delete removes the cgroup; the VM's process must be gone.
	Delete() error
}

// joinCgroup makes the cgroup at p (a cgroupfs path; "" or systemd's
// slice:prefix:name form means none) and moves pid into it. It returns
// nil and no error when there is nothing to make.
func joinCgroup(p string, pid int) (vmCgroup, error) {
	if p == "" || !path.IsAbs(p) || path.Clean(p) != p || p == "/" {
		return nil, nil
	}
	if cgroups.Mode() == cgroups.Unified {
		m, err := cgroup2.NewManager("/sys/fs/cgroup", p, &cgroup2.Resources{})
		if err != nil {
			return nil, fmt.Errorf("cgroup %s: %w", p, err)
		}
		if err := m.AddProc(uint64(pid)); err != nil {
			return nil, errors.Join(fmt.Errorf("move the VM into cgroup %s: %w", p, err), m.Delete())
		}
		return m, nil
	}
	cg, err := cgroup1.New(cgroup1.StaticPath(p), &specs.LinuxResources{})
	if err != nil {
		return nil, fmt.Errorf("cgroup %s: %w", p, err)
	}
	if err := cg.AddProc(uint64(pid)); err != nil {
		return nil, errors.Join(fmt.Errorf("move the VM into cgroup %s: %w", p, err), cg.Delete())
	}
	return cg, nil
}
