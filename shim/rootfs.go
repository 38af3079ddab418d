package shim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/uvmgcs/gcs/shim/layers"
)

// rootfsLayers is a container's root filesystem on the host: read-only
// layers, top first, as snapshot directories (overlayfs snapshotter) or
// erofs images (erofs snapshotter).
type rootfsLayers struct {
	dirs   []string // converted to erofs disks, cached
	images []string // erofs disks attached as they are
	// upper is the snapshot's upper directory when it already holds files
	// (it becomes the topmost read-only layer; the container writes to
	// its scratch disk).
	upper string
	// scratch is the snapshotter's writable image (erofs snapshotter in
	// block mode), made here when missing; else the scratch disk is a
	// sparse file in the bundle.
	scratch     string
	scratchSize int64
	// shareDir is a host directory that is the root itself, shared over
	// Plan9 (ctr run --rootfs, a writable bind mount).
	shareDir string
	shareRO  bool
}

// parseRootfs reads the snapshotter's mounts for a task: one overlay mount
// (lowerdir top first, upperdir, workdir), a read-only bind of one layer,
// the erofs snapshotter's mounts, or none (the spec's root is a host
// directory) or a writable bind: those are shared into the VM over Plan9.
func parseRootfs(mounts []*types.Mount, bundle string, root *specs.Root) (rootfsLayers, error) {
	if len(mounts) == 0 {
		if root == nil || root.Path == "" {
			return rootfsLayers{}, fmt.Errorf("no rootfs mounts and no root path in the spec: %w", errdefs.ErrInvalidArgument)
		}
		dir := root.Path
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(bundle, dir)
		}
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return rootfsLayers{}, fmt.Errorf("root %s is not a directory: %w", dir, errdefs.ErrInvalidArgument)
		}
		return rootfsLayers{shareDir: dir, shareRO: root.Readonly}, nil
	}
	if isErofsSnapshot(mounts) {
		return parseErofsSnapshot(mounts)
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
		return rootfsLayers{shareDir: m.Source}, nil
	}
	return rootfsLayers{}, fmt.Errorf("rootfs mount type %q (%s) is not supported: %w", m.Type, m.Source, errdefs.ErrNotImplemented)
}

// isErofsSnapshot tells the erofs snapshotter's mounts: erofs layers, a
// mkfs/ext4 writable image, a format/... overlay over them.
func isErofsSnapshot(mounts []*types.Mount) bool {
	for _, m := range mounts {
		if m.Type == "erofs" || strings.HasPrefix(m.Type, "mkfs/") || strings.HasPrefix(m.Type, "format/") {
			return true
		}
	}
	return false
}

// parseErofsSnapshot reads the erofs snapshotter's mounts: [mkfs/ext4
// rwlayer.img] (mount 0, whose upper and work directories the overlay
// uses: the guest's scratch layout), erofs layer.erofs per layer (top
// first), then format/mkdir/overlay or format/bind over them.
func parseErofsSnapshot(mounts []*types.Mount) (rootfsLayers, error) {
	var r rootfsLayers
	for i, m := range mounts {
		switch {
		case m.Type == "mkfs/ext4" || (m.Type == "ext4" && i == 0):
			// containerd made and formatted the image itself unless
			// the shim takes mkfs/: then it is "ext4".
			if i != 0 || r.scratch != "" {
				return r, fmt.Errorf("mkfs/ext4 mount %d: want it first: %w", i, errdefs.ErrInvalidArgument)
			}
			r.scratch = m.Source
			if st, err := os.Stat(m.Source); err == nil {
				r.scratchSize = st.Size()
			}
			for _, o := range m.Options {
				if v, ok := strings.CutPrefix(o, "X-containerd.mkfs.size="); ok {
					n, err := strconv.ParseInt(v, 10, 64)
					if err != nil || n < 0 {
						return r, fmt.Errorf("mkfs/ext4 size %q: %w", v, errdefs.ErrInvalidArgument)
					}
					r.scratchSize = n
				}
			}
		case m.Type == "erofs":
			for _, o := range m.Options {
				if strings.HasPrefix(o, "device=") {
					return r, fmt.Errorf("erofs layer %s with extra devices (fsmerge) is not supported: %w", m.Source, errdefs.ErrNotImplemented)
				}
			}
			r.images = append(r.images, m.Source)
		case m.Type == "format/mkdir/overlay" || m.Type == "format/bind" || m.Type == "format/mkdir/bind":
			if i != len(mounts)-1 {
				return r, fmt.Errorf("%s mount %d: want it last: %w", m.Type, i, errdefs.ErrInvalidArgument)
			}
		default:
			return r, fmt.Errorf("rootfs mount type %q (%s) is not supported: %w", m.Type, m.Source, errdefs.ErrNotImplemented)
		}
	}
	if len(r.images) == 0 {
		return r, fmt.Errorf("a rootfs with no image layer is not supported: %w", errdefs.ErrNotImplemented)
	}
	if r.scratch != "" && r.scratchSize == 0 {
		return r, fmt.Errorf("mkfs/ext4 %s without X-containerd.mkfs.size: %w", r.scratch, errdefs.ErrInvalidArgument)
	}
	return r, nil
}

// hostFiles makes the host files of r's root: its snapshot directories
// as cached erofs layer disks, a non-empty upper directory as a disk in
// the bundle, and a scratch disk (a fresh sparse file in the bundle, or
// the snapshot's own writable image). The UVM attaches them when the
// container is created; removeRootFiles deletes what was made in the
// bundle.
func hostFiles(ctx context.Context, r rootfsLayers, bundle string, scratchMiB int64, cache *layers.Cache) (root hostRoot, err error) {
	if r.shareDir != "" {
		return hostRoot{shareDir: r.shareDir, shareRO: r.shareRO}, nil
	}
	defer func() {
		if err != nil {
			removeRootFiles(bundle)
		}
	}()
	if r.upper != "" {
		img := filepath.Join(bundle, upperDisk)
		if err := layers.Convert(ctx, r.upper, img); err != nil {
			return root, err
		}
		root.layers = append(root.layers, img)
	}
	root.layers = append(root.layers, r.images...)
	for _, d := range r.dirs {
		img, hit, err := cache.Disk(ctx, d)
		if err != nil {
			return root, fmt.Errorf("layer %s: %w", d, err)
		}
		log.G(ctx).WithField("layer", d).WithField("cached", hit).Debug("layer disk")
		root.layers = append(root.layers, img)
	}
	if r.scratch == "" {
		root.scratch, root.removeScratch = filepath.Join(bundle, scratchDisk), true
		return root, sparseFile(root.scratch, scratchMiB<<20, true)
	}
	// The snapshot's own writable image: made once, kept with it.
	root.scratch = r.scratch
	return root, sparseFile(r.scratch, r.scratchSize, false)
}

// The disks made in a task's bundle.
const (
	upperDisk   = "upper.erofs"
	scratchDisk = "scratch.img"
)

// removeRootFiles deletes the disks made in the bundle (the UVM deletes
// the scratch disk when it releases it; a VM that died did not).
func removeRootFiles(bundle string) {
	os.Remove(filepath.Join(bundle, upperDisk))
	os.Remove(filepath.Join(bundle, scratchDisk))
}

// sparseFile makes a sparse file of size at path; unless fresh, a file
// that exists already is kept as it is.
func sparseFile(path string, size int64, fresh bool) error {
	flags := os.O_RDWR | os.O_CREATE | os.O_TRUNC
	if !fresh {
		flags = os.O_RDWR | os.O_CREATE | os.O_EXCL
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if !fresh && errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
