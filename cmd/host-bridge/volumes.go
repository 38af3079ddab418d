package main

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/uvmgcs/gcs/host/uvm"
)

// parseVolume reads -v HOST:GUEST[:ro|:rw]: an existing host directory
// and an absolute path in the container, shared by the VM's owner (a 9p
// server on an agent-channel port) and bound into the container.
func parseVolume(s string) (uvm.Mount, error) {
	parts := strings.Split(s, ":")
	var v uvm.Mount
	switch {
	case len(parts) == 3 && (parts[2] == "ro" || parts[2] == "rw"):
		v.ReadOnly = parts[2] == "ro"
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
	v.Source, v.Destination = h, path.Clean(c)
	return v, nil
}

func parseVolumes(ss []string) ([]uvm.Mount, error) {
	vs := make([]uvm.Mount, 0, len(ss))
	for _, s := range ss {
		v, err := parseVolume(s)
		if err != nil {
			return nil, usageError{err}
		}
		vs = append(vs, v)
	}
	return vs, nil
}
