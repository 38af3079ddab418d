package shim

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// maxSubmounts bounds the host mounts below one bind mount's source that
// are carried into the guest.
const maxSubmounts = 64

// hostMount is a mount point on the host and whether it is read-only.
type hostMount struct {
	path     string
	readOnly bool
}

// withSubmounts adds, after each recursive bind of a host directory
// (rbind: what CRI's volumes are), a bind of every host mount below its
// source, at the same place under its destination. A share carries one
// directory's files; the mounts below it have their own flags, which a
// recursive bind keeps on the host: a "ro" volume leaves a writable
// tmpfs below it writable, a recursive read-only ("rro") one does not.
// The guest mounts the added binds over the share, each from a share of
// its own.
func withSubmounts(mounts []specs.Mount, host []hostMount) ([]specs.Mount, error) {
	var out []specs.Mount
	for i, m := range mounts {
		out = append(out, m)
		if !isHostBind(m) || isGuestBind(m) || !isRecursive(m) {
			continue
		}
		src, err := filepath.EvalSymlinks(m.Source)
		if err != nil {
			continue // guestSpec reports it
		}
		if st, err := os.Stat(src); err != nil || !st.IsDir() {
			continue
		}
		rro := slices.Contains(m.Options, "rro")
		var below []hostMount
		for _, h := range host {
			if strings.HasPrefix(h.path, src+"/") {
				below = append(below, h)
			}
		}
		if len(below) > maxSubmounts {
			return nil, fmt.Errorf("bind mount at %s: %d mounts below %s, at most %d carry into a VM: %w",
				m.Destination, len(below), src, maxSubmounts, errdefs.ErrInvalidArgument)
		}
		// Parents first, so that a deeper mount lands on its parent.
		slices.SortStableFunc(below, func(a, b hostMount) int { return strings.Count(a.path, "/") - strings.Count(b.path, "/") })
		for _, h := range below {
			sub := specs.Mount{Destination: filepath.Join(mounts[i].Destination, strings.TrimPrefix(h.path, src)),
				Type: "bind", Source: h.path, Options: []string{"rbind"}}
			if rro || h.readOnly {
				sub.Options = append(sub.Options, "ro")
			}
			out = append(out, sub)
		}
	}
	return out, nil
}

// isRecursive reports whether a bind mount takes the mounts below its
// source (rbind), as CRI's do.
func isRecursive(m specs.Mount) bool {
	return m.Type == "rbind" || slices.Contains(m.Options, "rbind")
}

// readHostMounts is the mount table of this process's mount namespace.
func readHostMounts() ([]hostMount, error) {
	infos, err := mountinfo.GetMounts(nil)
	if err != nil {
		return nil, fmt.Errorf("mount table: %w", err)
	}
	ms := make([]hostMount, 0, len(infos))
	for _, in := range infos {
		ms = append(ms, hostMount{path: in.Mountpoint, readOnly: slices.Contains(strings.Split(in.Options, ","), "ro")})
	}
	return ms, nil
}
