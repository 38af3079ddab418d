package shim

import (
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// mountInfo is where the host's mount table is read (tests give their
// own).
const mountInfo = "/proc/self/mountinfo"

// hostMount is a mount point on the host.
type hostMount struct {
	path     string
	readOnly bool
}

// submountsOf lists the mount points strictly under dir in the mount
// table at table, parents first.
func submountsOf(table, dir string) ([]hostMount, error) {
	f, err := os.Open(table)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	prefix := filepath.Clean(dir) + "/"
	infos, err := mountinfo.GetMountsFromReader(f, func(m *mountinfo.Info) (skip, stop bool) {
		return !strings.HasPrefix(m.Mountpoint, prefix), false
	})
	if err != nil {
		return nil, err
	}
	ms := make([]hostMount, 0, len(infos))
	for _, m := range infos {
		ms = append(ms, hostMount{path: m.Mountpoint, readOnly: slices.Contains(strings.Split(m.Options, ","), "ro")})
	}
	// A path's parents sort before it; a mount stacked on the same path
	// keeps its place (the last one is what is seen).
	slices.SortStableFunc(ms, func(a, b hostMount) int { return strings.Count(a.path, "/") - strings.Count(b.path, "/") })
	return ms, nil
}

// withWritableSubmounts gives a read-only recursive bind mount of a host
// directory runc's meaning: read-only is the top mount's alone, and the
// host mounts under it keep their own (a Plan9 share exported read-only
// would make all of them read-only). Each writable submount becomes a
// bind of its own after m, as runc's rbind would show it. A mount that
// is not such a bind, or whose submounts cannot be read, gets none.
func withWritableSubmounts(table string, m specs.Mount) []specs.Mount {
	out := []specs.Mount{m}
	if !isHostBind(m) || !slices.Contains(m.Options, "ro") || slices.Contains(m.Options, "rro") || !slices.Contains(m.Options, "rbind") && m.Type != "rbind" {
		return out
	}
	dir, err := filepath.EvalSymlinks(m.Source)
	if err != nil {
		return out
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return out
	}
	subs, err := submountsOf(table, dir)
	if err != nil {
		return out
	}
	for _, s := range subs {
		if s.readOnly {
			continue
		}
		rel, err := filepath.Rel(dir, s.path)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue
		}
		opts := []string{"rbind"}
		for _, o := range m.Options {
			if o != "ro" && o != "bind" && o != "rbind" {
				opts = append(opts, o)
			}
		}
		out = append(out, specs.Mount{Destination: filepath.Join(m.Destination, rel), Type: "bind", Source: s.path, Options: opts})
	}
	return out
}
