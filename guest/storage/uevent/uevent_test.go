package uevent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/uvmgcs/gcs/guest/storage/storagetest"
)

// TestUeventsWake checks the real netlink watcher: attaching a loop device
// makes the kernel announce it, and a cancelled wait returns promptly.
func TestUeventsWake(t *testing.T) {
	storagetest.RequireRoot(t)
	dir := storagetest.Dir(t)
	w, err := Open()
	if err != nil {
		t.Skipf("SKIP (loud): no uevent socket: %v", err)
	}
	defer w.Close()
	storagetest.AttachLoop(t, storagetest.BlankImage(t, dir, "blank", 1<<20), true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Wait(ctx); err != nil {
		t.Fatalf("no uevent after attaching a loop device: %v", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	for w.Wait(ctx) == nil {
	}
	if ctx.Err() == nil {
		t.Fatal("Wait failed before its context ended")
	}
}

func TestPollerWakesAndStops(t *testing.T) {
	p := NewPoller()
	defer p.Close()
	if err := p.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Wait(ctx); err == nil {
		// A tick may already be pending; the next wait must see the cancel.
		if err := p.Wait(ctx); err == nil {
			t.Fatal("a cancelled wait kept returning nil")
		}
	}
}

// wakes is a Watcher that wakes once per value sent on it.
type wakes chan struct{}

func (w wakes) Wait(ctx context.Context) error {
	select {
	case <-w:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w wakes) Close() error { return nil }

func TestFind(t *testing.T) {
	ctx := context.Background()
	w := make(wakes, 2)
	w <- struct{}{}
	w <- struct{}{}
	looks := 0
	dev, err := Find(ctx, w, 10*time.Second, func() (string, error) {
		if looks++; looks < 3 {
			return "", fmt.Errorf("%w: not yet", ErrNotPresent)
		}
		return "/dev/x", nil
	})
	if dev != "/dev/x" || err != nil || looks != 3 {
		t.Fatalf("%q %v after %d looks, want /dev/x after 3", dev, err, looks)
	}

	broken := errors.New("broken")
	if _, err := Find(ctx, make(wakes), time.Second, func() (string, error) { return "", broken }); !errors.Is(err, broken) {
		t.Fatalf("a lookup error: %v", err)
	}
	_, err = Find(ctx, make(wakes), 20*time.Millisecond, func() (string, error) { return "", ErrNotPresent })
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "not present") {
		t.Fatalf("past the timeout: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Find(cctx, make(wakes), time.Second, func() (string, error) { return "", ErrNotPresent }); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}
