package scsi

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/containerd/errdefs"
	"github.com/uvmgcs/gcs/guest/storage/mounts"
	"github.com/uvmgcs/gcs/guest/storage/uevent"
)

// Filesystems the guest mounts disks as.
const (
	Ext4  = "ext4"
	XFS   = "xfs"
	EROFS = "erofs"
)

// superblockSpan is how much of a device DetectFilesystem reads.
const superblockSpan = 2048

// DetectFilesystem names the filesystem on dev by its superblock magic
// (ext2/3/4 as "ext4", which mounts all three), or "" when it knows none.
func DetectFilesystem(dev string) (string, error) {
	f, err := uevent.OpenSettled(dev)
	if err != nil {
		return "", fmt.Errorf("read superblock: %w", err)
	}
	defer f.Close()
	b := make([]byte, superblockSpan)
	n, err := f.ReadAt(b, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read superblock of %s: %w", dev, err)
	}
	return detect(b[:n]), nil
}

func detect(b []byte) string {
	switch {
	case len(b) >= 1082 && binary.LittleEndian.Uint16(b[1080:]) == 0xEF53:
		return Ext4
	case len(b) >= 1028 && binary.LittleEndian.Uint32(b[1024:]) == 0xE0F5E1E2:
		return EROFS
	case len(b) >= 4 && string(b[:4]) == "XFSB":
		return XFS
	}
	return ""
}

// MountOptions says how to mount a disk.
type MountOptions struct {
	ReadOnly bool
	// Filesystem is ext4, xfs or erofs; empty means detect it.
	Filesystem string
	// Options are appended to the mount: flag names (nodev, noexec, ...)
	// become flags, the rest filesystem data.
	Options []string
}

// flagOption returns the mount flag an option names, if it is a flag
// rather than filesystem data. "rw" is a flag that sets nothing: the
// request's ReadOnly decides.
func flagOption(opt string) (uintptr, bool) {
	switch opt {
	case "rw":
		return 0, true
	case "ro":
		return unix.MS_RDONLY, true
	case "nodev":
		return unix.MS_NODEV, true
	case "nosuid":
		return unix.MS_NOSUID, true
	case "noexec":
		return unix.MS_NOEXEC, true
	case "noatime":
		return unix.MS_NOATIME, true
	case "nodiratime":
		return unix.MS_NODIRATIME, true
	case "relatime":
		return unix.MS_RELATIME, true
	case "sync":
		return unix.MS_SYNCHRONOUS, true
	case "dirsync":
		return unix.MS_DIRSYNC, true
	}
	return 0, false
}

// maxMountData is mount(2)'s limit on the data string (one page, with its
// terminating NUL).
const maxMountData = 4095

// mountArgs returns the filesystem, flags and data to mount dev with.
func mountArgs(dev string, o MountOptions) (fstype string, flags uintptr, data string, err error) {
	fstype = o.Filesystem
	found, err := DetectFilesystem(dev)
	if err != nil {
		return "", 0, "", err
	}
	switch {
	case fstype == "" && found == "":
		return "", 0, "", fmt.Errorf("%s: no ext4, xfs or erofs superblock: %w", dev, errdefs.ErrInvalidArgument)
	case fstype == "":
		fstype = found
	case fstype != Ext4 && fstype != XFS && fstype != EROFS:
		return "", 0, "", fmt.Errorf("filesystem %q: want ext4, xfs or erofs: %w", fstype, errdefs.ErrInvalidArgument)
	case found != fstype:
		return "", 0, "", fmt.Errorf("%s holds %q, not %s: %w", dev, found, fstype, errdefs.ErrInvalidArgument)
	}
	var opts []string
	if o.ReadOnly || fstype == EROFS {
		flags |= unix.MS_RDONLY
		if fstype == Ext4 {
			// Do not replay the journal: that would write the disk.
			opts = append(opts, "noload")
		}
	}
	for _, opt := range o.Options {
		if opt == "" || strings.ContainsAny(opt, ",\x00") {
			return "", 0, "", fmt.Errorf("mount option %q: %w", opt, errdefs.ErrInvalidArgument)
		}
		if f, ok := flagOption(opt); ok {
			flags |= f
			continue
		}
		opts = append(opts, opt)
	}
	data = strings.Join(opts, ",")
	if len(data) > maxMountData {
		return "", 0, "", fmt.Errorf("mount options are %d bytes, more than %d: %w", len(data), maxMountData, errdefs.ErrInvalidArgument)
	}
	return fstype, flags, data, nil
}

// MountDevice mounts the block device dev at target, creating target, and
// returns how to undo it. On failure nothing is left mounted or created.
func MountDevice(ctx context.Context, dev, target string, o MountOptions) (mounts.Undo, error) {
	fstype, flags, data, err := mountArgs(dev, o)
	if err != nil {
		return nil, err
	}
	removeDir, err := mounts.MakeDir(target, 0o755)
	if err != nil {
		return nil, err
	}
	if err := unix.Mount(dev, target, fstype, flags, data); err != nil {
		removeDir()
		return nil, fmt.Errorf("mount %s (%s, %q) at %s: %w", dev, fstype, data, target, err)
	}
	return func(ctx context.Context) error {
		if err := mounts.Unmount(target); err != nil {
			return err
		}
		removeDir()
		return nil
	}, nil
}

// LinkDevice makes target a symbolic link to the device node dev (a disk
// the host wants as a raw block device) and returns how to undo it.
func LinkDevice(ctx context.Context, dev, target string) (mounts.Undo, error) {
	removeDir, err := mounts.MakeDir(filepath.Dir(target), 0o755)
	if err != nil {
		return nil, err
	}
	if err := os.Symlink(dev, target); err != nil {
		removeDir()
		return nil, fmt.Errorf("link %s to %s: %w", target, dev, err)
	}
	return func(ctx context.Context) error {
		if err := os.Remove(target); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove link %s: %w", target, err)
		}
		removeDir()
		return nil
	}, nil
}
