package uevent

import (
	"errors"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// settleTimeout bounds the wait for a new block device to go live.
const settleTimeout = 2 * time.Second

// OpenSettled opens a block device that may have just appeared: its node
// (and sysfs entry, which Find's lookups read) can exist a moment before
// the disk is live and opening it fails with ENXIO, so that error is
// retried briefly; any other is returned at once.
func OpenSettled(dev string) (*os.File, error) {
	deadline := time.Now().Add(settleTimeout)
	for {
		f, err := os.Open(dev)
		if err == nil || !errors.Is(err, unix.ENXIO) || time.Now().After(deadline) {
			return f, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// WaitLive returns once dev opens (OpenSettled): what opens a just-found
// device next (a mount, dm-verity's size probe) then finds it live.
func WaitLive(dev string) error {
	f, err := OpenSettled(dev)
	if err != nil {
		return err // a *PathError naming dev
	}
	return f.Close()
}
