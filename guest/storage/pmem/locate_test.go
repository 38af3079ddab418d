package pmem

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/uvmgcs/gcs/guest/storage/uevent"

	"github.com/uvmgcs/gcs/guest/storage/storagetest"
)

// fakeRoots returns an empty sysfs and device root.
func fakeRoots(t *testing.T) (sys, dev string) {
	t.Helper()
	dir := t.TempDir()
	sys, dev = filepath.Join(dir, "sys"), filepath.Join(dir, "dev")
	for _, d := range []string{filepath.Join(sys, "block"), dev} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return sys, dev
}

// sysDisk makes sysfs know the disk name.
func sysDisk(t *testing.T, sys, name string) {
	t.Helper()
	storagetest.WriteTree(t, filepath.Join(sys, "block", name), map[string]string{"dev": "259:0\n"})
}

func TestLookup(t *testing.T) {
	storagetest.RequireRoot(t) // device nodes
	sys, dev := fakeRoots(t)
	sysDisk(t, sys, "pmem0")
	storagetest.BlockNode(t, dev, "pmem0")
	sysDisk(t, sys, "pmem1") // no node yet
	storagetest.BlockNode(t, dev, "pmem2")
	sysDisk(t, sys, "pmem3")
	if err := os.WriteFile(filepath.Join(dev, "pmem3"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	l := NewLocator(Config{SysRoot: sys, DevRoot: dev})
	if got, err := l.Lookup(0); err != nil || got != filepath.Join(dev, "pmem0") {
		t.Errorf("pmem0: %q %v", got, err)
	}
	for _, n := range []uint32{1, 2, 7} {
		if _, err := l.Lookup(n); !errors.Is(err, errNotPresent) {
			t.Errorf("pmem%d: %v, want not present", n, err)
		}
	}
	if _, err := l.Lookup(3); err == nil || errors.Is(err, errNotPresent) {
		t.Errorf("pmem3 as a regular file: %v", err)
	}
}

// chanWatcher wakes Find when the test says so.
type chanWatcher chan struct{}

func (c chanWatcher) Wait(ctx context.Context) error {
	select {
	case <-c:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c chanWatcher) Close() error { return nil }

func TestFindTimesOut(t *testing.T) {
	sys, dev := fakeRoots(t)
	l := NewLocator(Config{SysRoot: sys, DevRoot: dev, Timeout: 100 * time.Millisecond})
	l.watch = func() (uevent.Watcher, error) { return make(chanWatcher), nil }
	_, err := l.Find(context.Background(), 4)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a timeout", err)
	}
	for _, want := range []string{"pmem device 4", filepath.Join(dev, "pmem4"), "did not appear within 100ms", "no pmem4 in sysfs"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("timeout error %q does not say %q", err, want)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Find(ctx, 4); !errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled: %v", err)
	}
	if NewLocator(Config{}).cfg.Timeout != DefaultTimeout {
		t.Fatal("no default timeout")
	}
}

func TestFindWakesOnEvent(t *testing.T) {
	storagetest.RequireRoot(t)
	sys, dev := fakeRoots(t)
	events := make(chanWatcher)
	l := NewLocator(Config{SysRoot: sys, DevRoot: dev, Timeout: time.Minute})
	l.watch = func() (uevent.Watcher, error) { return events, nil }
	found := make(chan error, 1)
	go func() {
		got, err := l.Find(context.Background(), 1)
		if err == nil && got != filepath.Join(dev, "pmem1") {
			err = errors.New("found " + got)
		}
		found <- err
	}()
	events <- struct{}{} // an unrelated event: Find looks and waits again
	sysDisk(t, sys, "pmem1")
	storagetest.BlockNode(t, dev, "pmem1")
	var err error
	select {
	case events <- struct{}{}:
		err = <-found
	case err = <-found: // it looked while the device was being added
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestFindFallsBackToPolling(t *testing.T) {
	storagetest.RequireRoot(t)
	sys, dev := fakeRoots(t)
	l := NewLocator(Config{SysRoot: sys, DevRoot: dev, Timeout: time.Minute})
	l.watch = func() (uevent.Watcher, error) { return nil, errors.New("no netlink here") }
	found := make(chan error, 1)
	go func() {
		_, err := l.Find(context.Background(), 0)
		found <- err
	}()
	time.Sleep(100 * time.Millisecond) // let it look and find nothing first
	sysDisk(t, sys, "pmem0")
	storagetest.BlockNode(t, dev, "pmem0")
	if err := <-found; err != nil {
		t.Fatal(err)
	}
}
