package dm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/containerd/errdefs"
	"github.com/uvmgcs/gcs/guest/storage/mounts"
	"github.com/uvmgcs/gcs/internal/log"
	"github.com/uvmgcs/gcs/protocol"
)

// ErrVerity means reading through a dm-verity device failed verification:
// the root digest the host sent does not match the data, or the data (or
// its hash tree) is corrupt. The kernel answers such reads with EIO.
var ErrVerity = errors.New("dm-verity: root digest mismatch or corrupt data")

// Use is what runs on a device-mapper device's node (dev): it mounts or
// links it, or stacks another device on it, and returns how to undo that.
type Use func(ctx context.Context, dev string) (mounts.Undo, error)

// Stack creates the device name with table, runs use on its node, and
// returns an Undo that undoes use and then removes the device. When use
// fails the device is removed again and nothing is left. A failed Undo
// can be run again.
func (m *Mapper) Stack(ctx context.Context, name string, table []Target, readOnly bool, use Use) (mounts.Undo, error) {
	dev, err := m.Create(ctx, name, table, readOnly)
	if err != nil {
		return nil, err
	}
	undo, err := use(ctx, dev)
	if err != nil {
		if rerr := m.Remove(ctx, name); rerr != nil {
			log.G(ctx).WithError(rerr).Warn("device-mapper: removing a device whose user failed")
		}
		return nil, err
	}
	return func(ctx context.Context) error {
		if err := undo(ctx); err != nil {
			return err
		}
		return m.Remove(ctx, name)
	}, nil
}

// StackLinear stacks the device name, the length bytes of dev from offset
// on, and runs use on it (see Stack).
func (m *Mapper) StackLinear(ctx context.Context, name, dev string, offset, length uint64, readOnly bool, use Use) (mounts.Undo, error) {
	table, err := Linear(dev, offset, length)
	if err != nil {
		return nil, err
	}
	size, err := DeviceSize(dev)
	if err != nil {
		return nil, err
	}
	if offset > size || length > size-offset {
		return nil, fmt.Errorf("linear slice of %d bytes at %d runs past the end of %s (%d bytes): %w",
			length, offset, dev, size, errdefs.ErrInvalidArgument)
	}
	return m.Stack(ctx, name, table, readOnly, use)
}

// StackVerity stacks the read-only dm-verity device name that info
// describes over dev and runs use on it (see Stack). It reads the first
// block before use runs, so a wrong root digest fails here; that failure,
// and an I/O error from use, wrap ErrVerity.
func (m *Mapper) StackVerity(ctx context.Context, name, dev string, info *protocol.VerityInfo, use Use) (mounts.Undo, error) {
	v, err := VerityOf(dev, info)
	if err != nil {
		return nil, err
	}
	size, err := DeviceSize(dev)
	if err != nil {
		return nil, err
	}
	if need := v.HashDeviceSize(); size < need {
		return nil, fmt.Errorf("dm-verity: %s is %d bytes; %d blocks of data and their hash tree need more than %d: %w",
			dev, size, v.DataBlocks, need, errdefs.ErrInvalidArgument)
	}
	table, err := v.Table()
	if err != nil {
		return nil, err
	}
	return m.Stack(ctx, name, table, true, func(ctx context.Context, vdev string) (mounts.Undo, error) {
		if err := readFirstBlock(vdev, int(v.DataBlockSize)); err != nil {
			return nil, m.verityError(name, err)
		}
		undo, err := use(ctx, vdev)
		if err != nil {
			return nil, m.verityError(name, err)
		}
		return undo, nil
	})
}

// verityError wraps an I/O error read through the verity device name in
// ErrVerity, naming the kernel's verdict when it has one.
func (m *Mapper) verityError(name string, err error) error {
	if !errors.Is(err, unix.EIO) {
		return err
	}
	if st, serr := m.Status(name); serr == nil && len(st) == 1 && st[0].Params == "C" {
		return fmt.Errorf("%w (the kernel marked %s corrupted): %w", ErrVerity, m.FullName(name), err)
	}
	return fmt.Errorf("%w: %w", ErrVerity, err)
}

// readFirstBlock reads the first n bytes of dev, which dm-verity checks
// against the hash tree.
func readFirstBlock(dev string, n int) error {
	f, err := os.Open(dev)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.ReadAt(make([]byte, n), 0) // a *PathError naming dev
	return err
}

// DeviceSize returns the size in bytes of the block device (or file) dev.
func DeviceSize(dev string) (uint64, error) {
	f, err := os.Open(dev)
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", dev, err)
	}
	defer f.Close()
	n, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", dev, err)
	}
	return uint64(n), nil
}
