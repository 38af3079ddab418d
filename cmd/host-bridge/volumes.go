package main

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/uvmgcs/gcs/host"
)

// volume is one -v HOST:GUEST[:ro].
type volume struct {
	host, container string
	readOnly        bool
}

// parseVolume reads HOST:GUEST[:ro|:rw]: an existing host directory and
// an absolute path in the container.
func parseVolume(s string) (volume, error) {
	parts := strings.Split(s, ":")
	var v volume
	switch {
	case len(parts) == 3 && (parts[2] == "ro" || parts[2] == "rw"):
		v.readOnly = parts[2] == "ro"
	case len(parts) != 2:
		return v, fmt.Errorf("-v %q: want HOST:GUEST[:ro]", s)
	}
	h, err := filepath.Abs(parts[0])
	if err != nil || parts[0] == "" {
		return v, fmt.Errorf("-v %q: host directory: want a path", s)
	}
	if fi, err := os.Stat(h); err != nil {
		return v, fmt.Errorf("-v %q: %w", s, err)
	} else if !fi.IsDir() {
		return v, fmt.Errorf("-v %q: %s is not a directory", s, h)
	}
	c := parts[1]
	if !path.IsAbs(c) || path.Clean(c) == "/" {
		return v, fmt.Errorf("-v %q: the container path must be absolute and not /", s)
	}
	v.host, v.container = h, path.Clean(c)
	return v, nil
}

func parseVolumes(ss []string) ([]volume, error) {
	vs := make([]volume, 0, len(ss))
	for _, s := range ss {
		v, err := parseVolume(s)
		if err != nil {
			return nil, usageError{err}
		}
		vs = append(vs, v)
	}
	return vs, nil
}

// shareVolumes shares each volume's host directory into the VM under
// /run/mounts/<id>/ and binds it into spec at its container path. The
// returned function releases the shares.
func shareVolumes(ctx context.Context, gc *host.GuestConnection, id string, vs []volume, spec *specs.Spec) (func(context.Context) error, error) {
	var shares []*host.Share
	release := func(ctx context.Context) error {
		var first error
		for i := len(shares) - 1; i >= 0; i-- {
			if err := shares[i].Release(ctx); err != nil && first == nil {
				first = err
			}
		}
		return first
	}
	for i, v := range vs {
		s, err := gc.ShareDirectory(ctx, v.host, fmt.Sprintf("/run/mounts/%s/v%d", id, i), v.readOnly)
		if err != nil {
			release(context.WithoutCancel(ctx))
			return nil, fmt.Errorf("-v %s: %w", v.host, err)
		}
		shares = append(shares, s)
		opts := []string{"rbind", "rw"}
		if v.readOnly {
			opts[1] = "ro"
		}
		spec.Mounts = append(spec.Mounts, specs.Mount{Destination: v.container, Type: "bind", Source: s.GuestPath(), Options: opts})
	}
	return release, nil
}
