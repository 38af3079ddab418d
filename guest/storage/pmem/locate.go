package pmem

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/uvmgcs/gcs/guest/storage/uevent"

	"github.com/uvmgcs/gcs/internal/log"
)

// DefaultTimeout bounds the wait for a device the host says it attached.
const DefaultTimeout = 5 * time.Second

// Config says where a Locator looks.
type Config struct {
	// SysRoot is sysfs ("/sys" in the guest).
	SysRoot string
	// DevRoot holds device nodes ("/dev" in the guest).
	DevRoot string
	// Timeout bounds Find's wait (DefaultTimeout if 0).
	Timeout time.Duration
}

// Locator finds /dev/pmem<N>. It holds no state besides its
// configuration; sysfs and the device root are read afresh on every call.
type Locator struct {
	cfg Config
	// watch opens the source of "something changed" wake-ups Find waits
	// on; tests replace it.
	watch func() (uevent.Watcher, error)
}

// NewLocator returns a Locator for cfg.
func NewLocator(cfg Config) *Locator {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	return &Locator{cfg: cfg, watch: uevent.Open}
}

// errNotPresent means the device is not (yet) in sysfs or the device root.
var errNotPresent = uevent.ErrNotPresent

// Name is the kernel's name for VPMem device n.
func Name(n uint32) string { return fmt.Sprintf("pmem%d", n) }

// Lookup returns the node of VPMem device n as sysfs and the device root
// show it now, without waiting. A device that is not there yet is an
// error wrapping errNotPresent.
func (l *Locator) Lookup(n uint32) (string, error) {
	name := Name(n)
	if _, err := os.Stat(filepath.Join(l.cfg.SysRoot, "block", name)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("%w: no %s in sysfs", errNotPresent, name)
		}
		return "", fmt.Errorf("%s in sysfs: %w", name, err)
	}
	dev := filepath.Join(l.cfg.DevRoot, name)
	fi, err := os.Stat(dev)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%w: %s has no device node yet", errNotPresent, name)
	}
	if err != nil {
		return "", fmt.Errorf("%s: %w", dev, err)
	}
	if fi.Mode()&fs.ModeDevice == 0 || fi.Mode()&fs.ModeCharDevice != 0 {
		return "", fmt.Errorf("%s is not a block device", dev)
	}
	return dev, nil
}

// Find returns the node of VPMem device n, waiting for the kernel to
// announce it when it is not there yet: the host adds a device and sends
// the request at about the same time. The wait ends at the Locator's
// timeout with an error naming the device and wrapping
// context.DeadlineExceeded.
func (l *Locator) Find(ctx context.Context, n uint32) (string, error) {
	// Subscribe before the first look, so an event between the look and
	// the wait is not lost.
	w, err := l.watch()
	if err != nil {
		log.G(ctx).WithError(err).Warn("kernel uevents unavailable; polling sysfs for pmem devices")
		w = uevent.NewPoller()
	}
	defer w.Close()
	dev, err := uevent.Find(ctx, w, l.cfg.Timeout, func() (string, error) { return l.Lookup(n) })
	if err != nil {
		return "", fmt.Errorf("pmem device %d (%s): %w", n, filepath.Join(l.cfg.DevRoot, Name(n)), err)
	}
	return dev, nil
}
