// Package uevent owns waking device lookups when the kernel announces a
// device: a NETLINK_KOBJECT_UEVENT socket, or a ticker where none opens.
// Callers re-read sysfs on every wake rather than parse events.
package uevent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Watcher wakes a lookup when the device tree may have changed.
type Watcher interface {
	// Wait returns nil when something may have changed, or ctx's error.
	Wait(ctx context.Context) error
	Close() error
}

// uevents is a NETLINK_KOBJECT_UEVENT socket subscribed to the kernel's
// device announcements. Any announcement wakes Wait.
type uevents struct {
	f   *os.File
	buf []byte
}

// ueventGroupKernel is the multicast group the kernel sends uevents to
// (group 2 is udev's re-broadcast, which the guest does not run).
const ueventGroupKernel = 1

// Open subscribes to the kernel's device announcements.
func Open() (Watcher, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_KOBJECT_UEVENT)
	if err != nil {
		return nil, fmt.Errorf("uevent socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: ueventGroupKernel}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind uevent socket: %w", err)
	}
	// A non-blocking descriptor makes a pollable file, so reads honour
	// deadlines.
	return &uevents{f: os.NewFile(uintptr(fd), "uevent"), buf: make([]byte, 16<<10)}, nil
}

func (u *uevents) Wait(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := u.f.SetReadDeadline(time.Time{}); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { u.f.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	_, err := u.f.Read(u.buf)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, unix.ENOBUFS):
		// Events were dropped: one of them may have been ours.
		return nil
	}
	return fmt.Errorf("read uevent: %w", err)
}

func (u *uevents) Close() error { return u.f.Close() }

// pollInterval is how often the fallback wakes.
const pollInterval = 50 * time.Millisecond

// poller is the fallback when no uevent socket can be opened (a network
// namespace without one): it wakes on a ticker.
type poller struct{ t *time.Ticker }

// NewPoller returns the ticker fallback.
func NewPoller() Watcher { return &poller{t: time.NewTicker(pollInterval)} }

func (p *poller) Wait(ctx context.Context) error {
	select {
	case <-p.t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *poller) Close() error { p.t.Stop(); return nil }

// ErrNotPresent marks a lookup whose device is not there yet: Find waits
// and looks again.
var ErrNotPresent = errors.New("not present")

// Find returns what lookup finds, calling it again each time w wakes while
// it fails with an error wrapping ErrNotPresent, for at most timeout. The
// caller subscribes w before calling (so an announcement between the first
// look and the wait is not lost) and closes it. Past the timeout the error
// wraps context.DeadlineExceeded and names the last lookup's error; when
// ctx ends first it wraps ctx's error.
func Find(ctx context.Context, w Watcher, timeout time.Duration, lookup func() (string, error)) (string, error) {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		dev, err := lookup()
		if err == nil || !errors.Is(err, ErrNotPresent) {
			return dev, err
		}
		if werr := w.Wait(wctx); werr != nil {
			switch {
			case ctx.Err() != nil:
				return "", ctx.Err()
			case wctx.Err() != nil:
				return "", fmt.Errorf("did not appear within %v (%v): %w", timeout, err, context.DeadlineExceeded)
			}
			return "", fmt.Errorf("wait for device: %w", werr)
		}
	}
}
