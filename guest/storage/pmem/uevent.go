package pmem

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// watcher wakes Find when the device tree may have changed.
type watcher interface {
	// Wait returns nil when something may have changed, or ctx's error.
	Wait(ctx context.Context) error
	Close() error
}

// uevents is a NETLINK_KOBJECT_UEVENT socket on the kernel's own group (the
// guest runs no udev to re-broadcast). Any announcement wakes Wait: Lookup
// re-reads sysfs and /dev, which is simpler than parsing events reliably.
type uevents struct {
	f   *os.File
	buf []byte
}

func openUevents() (watcher, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_KOBJECT_UEVENT)
	if err != nil {
		return nil, fmt.Errorf("uevent socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind uevent socket: %w", err)
	}
	// Non-blocking, so the file is pollable and reads honour deadlines.
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
	case err == nil, errors.Is(err, unix.ENOBUFS): // ENOBUFS: events were dropped, ours may be one
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return fmt.Errorf("read uevent: %w", err)
}

func (u *uevents) Close() error { return u.f.Close() }

// poller is the fallback when no uevent socket opens: it wakes Find every
// pollInterval.
type poller struct{ t *time.Ticker }

const pollInterval = 50 * time.Millisecond

func newPoller() *poller { return &poller{t: time.NewTicker(pollInterval)} }

func (p *poller) Wait(ctx context.Context) error {
	select {
	case <-p.t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *poller) Close() error { p.t.Stop(); return nil }
