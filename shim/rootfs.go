package shim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/uvmgcs/gcs/shim/layers"
)

// rootfsLayers is a container's root filesystem as host directories: the
// read-only layers, top first.
type rootfsLayers struct {
	dirs []string
	// upper is the snapshot's upper directory when it already holds files
	// (it becomes the topmost read-only layer; the container writes to
	// its scratch disk).
	upper string
}

// parseRootfs reads the snapshotter's mounts for a task: one overlay mount
// (lowerdir top first, upperdir, workdir) or a read-only bind of one
// layer. Anything else needs a host directory shared into the VM, which
// this shim does not do yet.
func parseRootfs(mounts []*types.Mount) (rootfsLayers, error) {
	if len(mounts) == 0 {
		return rootfsLayers{}, fmt.Errorf("a root filesystem that is not a snapshot (ctr run --rootfs) needs a shared host directory, which this shim does not support yet: %w", errdefs.ErrNotImplemented)
	}
	if len(mounts) > 1 {
		return rootfsLayers{}, fmt.Errorf("%d rootfs mounts: want one overlay or bind mount: %w", len(mounts), errdefs.ErrNotImplemented)
	}
	m := mounts[0]
	switch m.Type {
	case "overlay":
		var r rootfsLayers
		for _, o := range m.Options {
			k, v, _ := strings.Cut(o, "=")
			switch k {
			case "lowerdir":
				for _, d := range strings.Split(v, ":") {
					if d != "" {
						r.dirs = append(r.dirs, d)
					}
				}
			case "upperdir":
				r.upper = v
			}
		}
		if len(r.dirs) == 0 {
			return r, fmt.Errorf("overlay rootfs without lowerdir: %w", errdefs.ErrInvalidArgument)
		}
		if r.upper != "" {
			if empty, err := layers.Empty(r.upper); err != nil {
				return r, fmt.Errorf("rootfs upperdir: %w", err)
			} else if empty {
				r.upper = ""
			}
		}
		return r, nil
	case "bind", "rbind":
		for _, o := range m.Options {
			if o == "ro" {
				return rootfsLayers{dirs: []string{m.Source}}, nil
			}
		}
		return rootfsLayers{}, fmt.Errorf("a writable bind-mounted rootfs (%s) needs a shared host directory, which this shim does not support yet: %w", m.Source, errdefs.ErrNotImplemented)
	}
	return rootfsLayers{}, fmt.Errorf("rootfs mount type %q (%s) is not supported: %w", m.Type, m.Source, errdefs.ErrNotImplemented)
}

// attachedLayer is a layer disk plugged into the VM and mounted in the
// guest, shared by the containers that use it.
type attachedLayer struct {
	d         disk
	guestPath string
	refs      int
}

// diskSet owns the layer disks attached to one VM.
type diskSet struct {
	sb    sandbox
	cache *layers.Cache

	mu     sync.Mutex
	layers map[string]*attachedLayer // by image file
}

func newDiskSet(sb sandbox, cache *layers.Cache) *diskSet {
	return &diskSet{sb: sb, cache: cache, layers: make(map[string]*attachedLayer)}
}

// acquireLayer attaches and mounts the image file once per VM.
func (s *diskSet) acquireLayer(ctx context.Context, img string) (*attachedLayer, error) {
	if a, ok := s.layers[img]; ok {
		a.refs++
		return a, nil
	}
	d, err := s.sb.AttachDisk(ctx, img, true)
	if err != nil {
		return nil, err
	}
	a := &attachedLayer{d: d, guestPath: s.sb.GuestLayerPath(d), refs: 1}
	if err := s.sb.MountDisk(ctx, d, a.guestPath, true, false); err != nil {
		_ = s.sb.DetachDisk(context.WithoutCancel(ctx), d)
		return nil, err
	}
	s.layers[img] = a
	return a, nil
}

func (s *diskSet) releaseLayer(ctx context.Context, img string) error {
	a, ok := s.layers[img]
	if !ok {
		return nil
	}
	if a.refs--; a.refs > 0 {
		return nil
	}
	delete(s.layers, img)
	return errors.Join(s.sb.UnmountDisk(ctx, a.d, a.guestPath, true), s.sb.DetachDisk(ctx, a.d))
}

// mountRootfs builds a container's root in the guest at root: its layers
// as cached read-only erofs disks, a fresh sparse scratch disk in the
// bundle (formatted by the guest), an overlay over them. release undoes
// it; on error nothing is left.
func (s *diskSet) mountRootfs(ctx context.Context, r rootfsLayers, bundle string, scratchMiB int64, root string) (release func(context.Context) error, err error) {
	var undo []func(context.Context) error
	unwind := func(ctx context.Context) error {
		var errs []error
		for i := len(undo) - 1; i >= 0; i-- {
			errs = append(errs, undo[i](ctx))
		}
		return errors.Join(errs...)
	}
	defer func() {
		if err != nil {
			if uerr := unwind(context.WithoutCancel(ctx)); uerr != nil {
				log.G(ctx).WithError(uerr).Warn("undo a root filesystem that failed to mount")
			}
		}
	}()

	imgs := make([]string, 0, len(r.dirs)+1)
	if r.upper != "" {
		img := filepath.Join(bundle, "upper.erofs")
		if err := layers.Convert(ctx, r.upper, img); err != nil {
			return nil, err
		}
		undo = append(undo, func(context.Context) error { return os.Remove(img) })
		imgs = append(imgs, img)
	}
	for _, d := range r.dirs {
		img, hit, err := s.cache.Disk(ctx, d)
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", d, err)
		}
		log.G(ctx).WithField("layer", d).WithField("cached", hit).Debug("layer disk")
		imgs = append(imgs, img)
	}
	s.mu.Lock()
	guestLayers := make([]string, 0, len(imgs))
	for _, img := range imgs {
		a, err := s.acquireLayer(ctx, img)
		if err != nil {
			s.mu.Unlock()
			return nil, err
		}
		undo = append(undo, func(ctx context.Context) error {
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.releaseLayer(ctx, img)
		})
		guestLayers = append(guestLayers, a.guestPath)
	}
	s.mu.Unlock()

	scratch := filepath.Join(bundle, "scratch.img")
	if err := sparseFile(scratch, scratchMiB<<20); err != nil {
		return nil, err
	}
	undo = append(undo, func(context.Context) error { return os.Remove(scratch) })
	sd, err := s.sb.AttachDisk(ctx, scratch, false)
	if err != nil {
		return nil, err
	}
	undo = append(undo, func(ctx context.Context) error { return s.sb.DetachDisk(ctx, sd) })
	scratchPath := s.sb.GuestScratchPath(sd)
	if err := s.sb.MountDisk(ctx, sd, scratchPath, false, true); err != nil {
		return nil, fmt.Errorf("scratch disk: %w", err)
	}
	undo = append(undo, func(ctx context.Context) error { return s.sb.UnmountDisk(ctx, sd, scratchPath, false) })
	if err := s.sb.CombineLayers(ctx, guestLayers, scratchPath, root); err != nil {
		return nil, fmt.Errorf("combine %d layers: %w", len(guestLayers), err)
	}
	undo = append(undo, func(ctx context.Context) error { return s.sb.UncombineLayers(ctx, guestLayers, scratchPath, root) })
	return unwind, nil
}

func sparseFile(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
