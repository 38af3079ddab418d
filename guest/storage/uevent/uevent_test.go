package uevent

import (
	"context"
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
