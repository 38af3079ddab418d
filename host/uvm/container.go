package uvm

import (
	"context"
	"errors"
	"fmt"
	"path"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/uvmgcs/gcs/host"
	"github.com/uvmgcs/gcs/internal/log"
)

// RootFS is a container's root filesystem made of disk files on the host.
type RootFS struct {
	// Layers are read-only layer disks (ext4 or erofs images), the top
	// first. A layer file shared with other containers is attached and
	// mounted once.
	Layers []string
	// Scratch is the writable disk the overlay's upper directory lives on;
	// none (a read-only root) if empty.
	Scratch string
	// BlankScratch has the guest format Scratch (ext4) first.
	BlankScratch bool
	// RemoveScratch deletes the Scratch file once the container has
	// released it (a disk made for this container only).
	RemoveScratch bool
}

// Mount is a host directory a container sees at Destination, through a
// share (the UVM's Sharer).
type Mount struct {
	Source      string // host directory
	Destination string // path in the container
	ReadOnly    bool
}

// ContainerConfig is what CreateContainer adds to the UVM for a container.
type ContainerConfig struct {
	RootFS RootFS
	Mounts []Mount
	// Hold are resources the caller added (a root it combined itself,
	// say) that the container holds from now on: its Delete releases
	// them, after what CreateContainer added. They are released on a
	// failed create too.
	Hold []*Resource
}

// Container is a container in the UVM together with the resources it
// holds; Delete releases them.
type Container struct {
	*host.Container
	u *UVM
}

// RootPath is where the guest assembles container id's root filesystem.
func RootPath(id string) string { return path.Join(host.GuestBundleRoot, id, "rootfs") }

// CreateContainer adds cfg's disks and shares to the UVM, assembles the
// root filesystem at RootPath(id) (spec.Root.Path is set to it) and
// creates container id from spec. When cfg names no layers, spec's root
// must already be in place in the guest. On failure everything taken is
// released again.
func (u *UVM) CreateContainer(ctx context.Context, id string, spec *specs.Spec, cfg ContainerConfig) (_ *Container, retErr error) {
	if spec == nil {
		return nil, fmt.Errorf("container %q: no spec: %w", id, errdefs.ErrInvalidArgument)
	}
	u.mu.Lock()
	if _, ok := u.ctrs[id]; ok {
		u.mu.Unlock()
		return nil, fmt.Errorf("container %q: %w", id, errdefs.ErrAlreadyExists)
	}
	u.ctrs[id] = []string{}
	u.mu.Unlock()

	taken := append([]*Resource(nil), cfg.Hold...)
	defer func() {
		if retErr == nil {
			return
		}
		rctx := context.WithoutCancel(ctx)
		if err := releaseAll(rctx, taken); err != nil {
			log.G(ctx).WithError(err).WithField(log.FieldContainerID, id).Warn("release what a failed create took")
		}
		u.mu.Lock()
		delete(u.ctrs, id)
		u.saveLocked()
		u.mu.Unlock()
	}()
	take := func(r *Resource, err error) (*Resource, error) {
		if err == nil {
			taken = append(taken, r)
		}
		return r, err
	}

	if rf := cfg.RootFS; len(rf.Layers) > 0 {
		var layers []string
		for _, l := range rf.Layers {
			r, err := take(u.AddSCSI(ctx, l, SCSIOptions{ReadOnly: true}))
			if err != nil {
				return nil, fmt.Errorf("container %q: layer: %w", id, err)
			}
			layers = append(layers, r.GuestPath())
		}
		var scratch string
		if rf.Scratch != "" {
			r, err := take(u.AddSCSI(ctx, rf.Scratch, SCSIOptions{EnsureFilesystem: rf.BlankScratch, RemoveFile: rf.RemoveScratch}))
			if err != nil {
				return nil, fmt.Errorf("container %q: scratch: %w", id, err)
			}
			scratch = r.GuestPath()
		}
		root := RootPath(id)
		if _, err := take(u.Combine(ctx, root, layers, scratch)); err != nil {
			return nil, fmt.Errorf("container %q: %w", id, err)
		}
		if spec.Root == nil {
			spec.Root = &specs.Root{}
		}
		spec.Root.Path = root
	}
	for _, m := range cfg.Mounts {
		r, err := take(u.AddShare(ctx, m.Source, m.ReadOnly))
		if err != nil {
			return nil, fmt.Errorf("container %q: mount %s: %w", id, m.Destination, err)
		}
		opts := []string{"rbind", "rw"}
		if m.ReadOnly {
			opts[1] = "ro"
		}
		spec.Mounts = append(spec.Mounts, specs.Mount{Destination: m.Destination, Type: "bind", Source: r.GuestPath(), Options: opts})
	}

	u.mu.Lock()
	for _, r := range taken {
		u.ctrs[id] = append(u.ctrs[id], r.key)
	}
	err := u.saveLocked()
	u.mu.Unlock()
	if err != nil {
		return nil, err
	}
	c, err := u.gc.CreateContainer(ctx, id, spec)
	if err != nil {
		return nil, err
	}
	return &Container{Container: c, u: u}, nil
}

// OpenContainer returns container id, which exists in the guest (created
// by this process or, before it restarted, by another), with the
// resources the UVM's table says it holds. Opening it twice returns
// handles on one container.
func (u *UVM) OpenContainer(ctx context.Context, id string) (*Container, error) {
	c, err := u.gc.OpenContainer(ctx, id)
	if err != nil {
		return nil, err
	}
	return &Container{Container: c, u: u}, nil
}

// Delete removes the stopped container in the guest, then releases its
// resources in the reverse order they were taken (mounts before the disks
// under them). A container already gone from the guest still has its
// resources released.
func (c *Container) Delete(ctx context.Context) error {
	if err := c.Container.Delete(ctx); err != nil {
		return err
	}
	return c.u.releaseContainer(ctx, c.ID())
}

// releaseContainer releases the resources the table lists for id.
func (u *UVM) releaseContainer(ctx context.Context, id string) error {
	u.mu.Lock()
	keys := append([]string(nil), u.ctrs[id]...)
	u.mu.Unlock()
	var errs []error
	for i := len(keys) - 1; i >= 0; i-- {
		if err := u.release(ctx, keys[i]); err != nil {
			errs = append(errs, err)
			continue
		}
		// Released: a retry must not drop this reference again.
		u.mu.Lock()
		held := u.ctrs[id]
		for j, k := range held {
			if k == keys[i] {
				u.ctrs[id] = append(held[:j:j], held[j+1:]...)
				break
			}
		}
		u.mu.Unlock()
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if err := errors.Join(errs...); err != nil {
		u.saveLocked()
		return fmt.Errorf("container %q: %w", id, err)
	}
	delete(u.ctrs, id)
	return u.saveLocked()
}

// releaseAll releases rs in reverse order.
func releaseAll(ctx context.Context, rs []*Resource) error {
	var errs []error
	for i := len(rs) - 1; i >= 0; i-- {
		if err := rs[i].Release(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
