// Package share owns MappedDirectory in the guest: a host directory shared
// into the utility VM and mounted at MountPath. Under QEMU the host shares
// it as a virtio-9p device whose mount tag is ShareName; a share that names
// a Port (hcsshim's 9p over a dialed connection, trans=fd) needs a 9p
// server on the host, which this host library does not run, and is
// refused as not implemented.
package share

import (
	"context"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/uvmgcs/gcs/guest/storage/mounts"
	"github.com/uvmgcs/gcs/protocol"
)

// maxTag bounds a 9p mount tag.
const maxTag = 255

// Shares mounts shared directories through the mount table.
type Shares struct {
	table *mounts.Table
}

// New returns a Shares recording its mounts in table.
func New(table *mounts.Table) *Shares { return &Shares{table: table} }

func check(d *protocol.MappedDirectory) error {
	if d.Port != 0 {
		return fmt.Errorf("mapped directory over port %#x (9p trans=fd): %w", d.Port, protocol.HrNotImpl)
	}
	if d.ShareName == "" || len(d.ShareName) > maxTag || strings.ContainsAny(d.ShareName, ",\x00 ") {
		return fmt.Errorf("share name %q: want a virtio-9p mount tag: %w", d.ShareName, protocol.HrInvalidArg)
	}
	return nil
}

// Add mounts the share tagged ShareName at MountPath (read-only when asked).
func (s *Shares) Add(ctx context.Context, d *protocol.MappedDirectory) error {
	if err := check(d); err != nil {
		return err
	}
	key := "9p:" + d.ShareName
	var flags uintptr
	if d.ReadOnly {
		key += ":ro"
		flags = unix.MS_RDONLY
	}
	return s.table.Add(ctx, d.MountPath, key, func(ctx context.Context) (mounts.Undo, error) {
		removeDir, err := mounts.MakeDir(d.MountPath, 0o755)
		if err != nil {
			return nil, err
		}
		opts := "trans=virtio,version=9p2000.L,msize=262144,cache=none"
		if err := unix.Mount(d.ShareName, d.MountPath, "9p", flags|unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
			removeDir()
			return nil, fmt.Errorf("mount 9p share %q at %s: %w", d.ShareName, d.MountPath, err)
		}
		return func(ctx context.Context) error {
			if err := mounts.Unmount(d.MountPath); err != nil {
				return err
			}
			removeDir()
			return nil
		}, nil
	})
}

// Remove unmounts the share at MountPath.
func (s *Shares) Remove(ctx context.Context, d *protocol.MappedDirectory) error {
	return s.table.Remove(ctx, d.MountPath)
}
