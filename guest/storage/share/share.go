// Package share owns MappedDirectory in the guest: a host directory shared
// into the utility VM over 9p and mounted at MountPath. A share that names
// a Port is hcsshim's kind: the guest dials that port of its host channel
// and mounts 9p over the connection (trans=fd), attaching to ShareName
// (the 9p aname) on the host's server. A share without a Port is a
// virtio-9p device whose mount tag is ShareName (QEMU's -fsdev shares).
// Both kinds are reference-counted in the mount table and read-only when
// asked.
package share

import (
	"context"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/containerd/errdefs"
	"github.com/uvmgcs/gcs/guest/storage/mounts"
	"github.com/uvmgcs/gcs/protocol"
	"github.com/uvmgcs/gcs/transport"
)

// maxName bounds a 9p mount tag or attach name.
const maxName = 255

// Shares mounts shared directories through the mount table.
type Shares struct {
	table  *mounts.Table
	dialer transport.Dialer
}

// New returns a Shares recording its mounts in table and dialing the
// host's 9p servers through dialer (nil: shares over a port are refused).
func New(table *mounts.Table, dialer transport.Dialer) *Shares {
	return &Shares{table: table, dialer: dialer}
}

func (s *Shares) check(d *protocol.MappedDirectory) error {
	if d.Port != 0 {
		if s.dialer == nil {
			return fmt.Errorf("mapped directory over port %#x: no host channel to dial: %w", d.Port, errdefs.ErrNotImplemented)
		}
		// An empty ShareName attaches to the server's root (no aname).
		if len(d.ShareName) > maxName || strings.ContainsAny(d.ShareName, ",\x00") {
			return fmt.Errorf("share name %q: want a 9p attach name: %w", d.ShareName, errdefs.ErrInvalidArgument)
		}
		return nil
	}
	if d.ShareName == "" || len(d.ShareName) > maxName || strings.ContainsAny(d.ShareName, ",\x00 ") {
		return fmt.Errorf("share name %q: want a virtio-9p mount tag: %w", d.ShareName, errdefs.ErrInvalidArgument)
	}
	return nil
}

// key says what is mounted, so a second Add of the same share at the same
// path takes a reference and a different one is refused.
func key(d *protocol.MappedDirectory) string {
	k := "9p:" + d.ShareName
	if d.Port != 0 {
		k = fmt.Sprintf("9p-port:%#x:%s", d.Port, d.ShareName)
	}
	if d.ReadOnly {
		k += ":ro"
	}
	return k
}

// Add mounts the share at MountPath (read-only when asked).
func (s *Shares) Add(ctx context.Context, d *protocol.MappedDirectory) error {
	if err := s.check(d); err != nil {
		return err
	}
	return s.table.Add(ctx, d.MountPath, key(d), func(ctx context.Context) (mounts.Undo, error) {
		removeDir, err := mounts.MakeDir(d.MountPath, 0o755)
		if err != nil {
			return nil, err
		}
		var undo mounts.Undo
		if d.Port != 0 {
			undo, err = s.mountPort(ctx, d)
		} else {
			undo, err = mountVirtio(d)
		}
		if err != nil {
			removeDir()
			return nil, err
		}
		return func(ctx context.Context) error {
			if err := undo(ctx); err != nil {
				return err
			}
			removeDir()
			return nil
		}, nil
	})
}

// Remove drops a reference to the share at MountPath; the last one
// unmounts it (and, for a share over a port, closes the connection).
func (s *Shares) Remove(ctx context.Context, d *protocol.MappedDirectory) error {
	return s.table.Remove(ctx, d.MountPath)
}

func flags(d *protocol.MappedDirectory) uintptr {
	f := uintptr(unix.MS_NOSUID | unix.MS_NODEV)
	if d.ReadOnly {
		f |= unix.MS_RDONLY
	}
	return f
}

// mountVirtio mounts the virtio-9p device tagged ShareName.
func mountVirtio(d *protocol.MappedDirectory) (mounts.Undo, error) {
	opts := "trans=virtio,version=9p2000.L,msize=262144,cache=none"
	if err := unix.Mount(d.ShareName, d.MountPath, "9p", flags(d), opts); err != nil {
		return nil, fmt.Errorf("mount 9p share %q at %s: %w", d.ShareName, d.MountPath, err)
	}
	return func(context.Context) error { return mounts.Unmount(d.MountPath) }, nil
}
