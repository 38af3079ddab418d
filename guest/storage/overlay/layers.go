package overlay

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/uvmgcs/gcs/guest/storage/mounts"
	"github.com/uvmgcs/gcs/protocol"
)

// Layers serves CombinedLayers requests, counting the requests that hold
// each container root in a mount table it shares with the other storage
// kinds.
type Layers struct {
	table *mounts.Table
}

// NewLayers returns Layers recording mounts in table.
func NewLayers(table *mounts.Table) *Layers { return &Layers{table: table} }

// spec checks c's paths and turns it into an overlay Spec: upper and work
// directories are "upper" and "work" in the scratch directory.
func (l *Layers) spec(c *protocol.CombinedLayers) (Spec, error) {
	roots := l.table.Roots()
	var s Spec
	if len(c.Layers) == 0 {
		return s, fmt.Errorf("combined layers at %s: no layers: %w", c.ContainerRootPath, errdefs.ErrInvalidArgument)
	}
	for _, layer := range c.Layers {
		if err := roots.Check(layer.Path); err != nil {
			return s, fmt.Errorf("layer %q: %w", layer.ID, err)
		}
		s.Lowers = append(s.Lowers, layer.Path)
	}
	if c.ScratchPath != "" {
		if err := roots.Check(c.ScratchPath); err != nil {
			return s, fmt.Errorf("scratch: %w", err)
		}
		s.Upper = filepath.Join(c.ScratchPath, "upper")
		s.Work = filepath.Join(c.ScratchPath, "work")
		for _, d := range []string{s.Upper, s.Work} {
			if err := roots.Check(d); err != nil {
				return s, fmt.Errorf("scratch: %w", err)
			}
		}
	}
	return s, nil
}

// key describes an overlay, so the same request twice shares one mount.
func (s Spec) key() string {
	return fmt.Sprintf("overlay lower=%s upper=%q", strings.Join(s.Lowers, ":"), s.Upper)
}

// Add mounts the overlay at c.ContainerRootPath.
func (l *Layers) Add(ctx context.Context, c *protocol.CombinedLayers) error {
	s, err := l.spec(c)
	if err != nil {
		return err
	}
	return l.table.Add(ctx, c.ContainerRootPath, s.key(), func(ctx context.Context) (mounts.Undo, error) {
		var removeDirs []func()
		undoDirs := func() {
			for i := len(removeDirs) - 1; i >= 0; i-- {
				removeDirs[i]()
			}
		}
		for _, d := range []string{s.Upper, s.Work} {
			if d == "" {
				continue
			}
			rm, err := mounts.MakeDir(d, 0o755)
			if err != nil {
				undoDirs()
				return nil, err
			}
			removeDirs = append(removeDirs, rm)
		}
		undo, err := Mount(ctx, c.ContainerRootPath, s)
		if err != nil {
			undoDirs()
			return nil, err
		}
		return undo, nil
	})
}

// Remove drops the reference Add took on c.ContainerRootPath, unmounting
// the overlay with the last one. The scratch directories stay: they are
// the container's writes, and go with the scratch disk.
func (l *Layers) Remove(ctx context.Context, c *protocol.CombinedLayers) error {
	return l.table.Remove(ctx, c.ContainerRootPath)
}
