package mounts

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/containerd/errdefs"
)

// tempRoots returns two allowed roots in a temp dir and the dir.
func tempRoots(t *testing.T) (Roots, string) {
	t.Helper()
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a, b := filepath.Join(dir, "layers"), filepath.Join(dir, "mounts")
	for _, d := range []string{a, b, filepath.Join(dir, "outside")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	r, err := NewRoots([]string{a, b})
	if err != nil {
		t.Fatal(err)
	}
	return r, dir
}

func TestRootsCheck(t *testing.T) {
	r, dir := tempRoots(t)
	mustLink := func(target, link string) {
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	mustLink(filepath.Join(dir, "outside"), filepath.Join(dir, "mounts", "escape"))
	mustLink("../../outside", filepath.Join(dir, "layers", "relescape"))
	mustLink(filepath.Join(dir, "layers"), filepath.Join(dir, "mounts", "inside"))
	mustLink(filepath.Join(dir, "nowhere"), filepath.Join(dir, "mounts", "dangling"))
	if err := os.Mkdir(filepath.Join(dir, "mounts", "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	mustLink(filepath.Join(dir, "mounts", "x"), filepath.Join(dir, "mounts", "final"))

	for _, tc := range []struct {
		path   string
		ok     bool
		target bool // CheckTarget instead of Check
	}{
		{path: dir + "/layers/p0", ok: true},
		{path: dir + "/mounts/scsi/m3/deeper", ok: true},
		{path: dir + "/mounts/inside/p1", ok: true},
		{path: "", ok: false},
		{path: "layers/p0", ok: false},
		{path: dir + "/layers", ok: false},
		{path: dir + "/layers/", ok: false},
		{path: dir + "/layers//p0", ok: false},
		{path: dir + "/layers/./p0", ok: false},
		{path: dir + "/layers/../outside", ok: false},
		{path: dir + "/layers/p0/../../outside/x", ok: false},
		{path: dir + "/outside/x", ok: false},
		{path: dir + "/layersx/p0", ok: false},
		{path: "/etc/passwd", ok: false},
		{path: dir + "/mounts/escape", ok: false},
		{path: dir + "/mounts/escape/sub/dir", ok: false},
		{path: dir + "/layers/relescape/x", ok: false},
		{path: dir + "/mounts/dangling/x", ok: false},
		{path: dir + "/mounts/final", ok: true},
		{path: dir + "/mounts/final", ok: false, target: true},
		{path: dir + "/mounts/new", ok: true, target: true},
		{path: dir + "/mounts/nul\x00", ok: false},
	} {
		check := r.Check
		if tc.target {
			check = r.CheckTarget
		}
		err := check(tc.path)
		if (err == nil) != tc.ok {
			t.Errorf("%q (target %t): err = %v, want ok %t", tc.path, tc.target, err, tc.ok)
		}
		if err != nil && !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%q: %v does not wrap HrInvalidArg", tc.path, err)
		}
	}
}

func TestNewRootsRefusesBadRoots(t *testing.T) {
	for _, roots := range [][]string{{"relative"}, {"/"}, {"/run/../etc"}, {"/run/x/"}} {
		if _, err := NewRoots(roots); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%q: err = %v, want HrInvalidArg", roots, err)
		}
	}
	r, err := NewRoots(nil)
	if err != nil || len(r.Dirs()) != 3 {
		t.Fatalf("defaults: %v %v", r.Dirs(), err)
	}
}

// fakeMount counts mounts and unmounts without touching the kernel.
type fakeMount struct {
	mounted, unmounted atomic.Int32
	failMount          error
	failUnmount        error
	order              *[]string
	mu                 *sync.Mutex
}

func (f *fakeMount) mount(name string) MountFunc {
	return func(ctx context.Context) (Undo, error) {
		if f.failMount != nil {
			return nil, f.failMount
		}
		f.mounted.Add(1)
		return func(ctx context.Context) error {
			if f.failUnmount != nil {
				return f.failUnmount
			}
			f.unmounted.Add(1)
			if f.order != nil {
				f.mu.Lock()
				*f.order = append(*f.order, name)
				f.mu.Unlock()
			}
			return nil
		}, nil
	}
}

func newTable(t *testing.T) (*Table, string) {
	t.Helper()
	_, dir := tempRoots(t)
	tb, err := New([]string{filepath.Join(dir, "layers"), filepath.Join(dir, "mounts")})
	if err != nil {
		t.Fatal(err)
	}
	return tb, dir
}

func TestTableRefcounts(t *testing.T) {
	ctx := context.Background()
	tb, dir := newTable(t)
	target := dir + "/mounts/m0"
	var f fakeMount
	for range 2 {
		if err := tb.Add(ctx, target, "disk a", f.mount("a")); err != nil {
			t.Fatal(err)
		}
	}
	if f.mounted.Load() != 1 || tb.Refs(target) != 2 {
		t.Fatalf("two adds: %d mounts, %d refs; want 1 mount, 2 refs", f.mounted.Load(), tb.Refs(target))
	}
	if err := tb.Add(ctx, target, "disk b", f.mount("b")); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("different source at the same target: %v", err)
	}
	if err := tb.Remove(ctx, target); err != nil || f.unmounted.Load() != 0 || tb.Refs(target) != 1 {
		t.Fatalf("first remove: %v, %d unmounts, %d refs", err, f.unmounted.Load(), tb.Refs(target))
	}
	if err := tb.Remove(ctx, target); err != nil || f.unmounted.Load() != 1 || tb.Refs(target) != 0 {
		t.Fatalf("last remove: %v, %d unmounts, %d refs", err, f.unmounted.Load(), tb.Refs(target))
	}
	if err := tb.Remove(ctx, target); err != nil {
		t.Fatalf("removing what is not mounted is success: %v", err)
	}
	if len(tb.entries) != 0 {
		t.Fatalf("entries left: %v", tb.entries)
	}
}

func TestTableFailedAddLeavesNothing(t *testing.T) {
	ctx := context.Background()
	tb, dir := newTable(t)
	target := dir + "/mounts/m0"
	boom := errors.New("boom")
	f := fakeMount{failMount: boom}
	if err := tb.Add(ctx, target, "a", f.mount("a")); !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	if tb.Refs(target) != 0 || len(tb.entries) != 0 {
		t.Fatalf("failed add left %d refs, %d entries", tb.Refs(target), len(tb.entries))
	}
	f.failMount = nil
	if err := tb.Add(ctx, target, "a", f.mount("a")); err != nil || f.mounted.Load() != 1 {
		t.Fatalf("retry: %v, %d mounts", err, f.mounted.Load())
	}
}

func TestTableUnmountFailureKeepsReference(t *testing.T) {
	ctx := context.Background()
	tb, dir := newTable(t)
	target := dir + "/mounts/m0"
	f := fakeMount{failUnmount: errors.New("busy")}
	if err := tb.Add(ctx, target, "a", f.mount("a")); err != nil {
		t.Fatal(err)
	}
	if err := tb.Remove(ctx, target); err == nil || tb.Refs(target) != 1 {
		t.Fatalf("failed unmount: %v, %d refs; want an error and the reference kept", err, tb.Refs(target))
	}
	f.failUnmount = nil
	if err := tb.Remove(ctx, target); err != nil || tb.Refs(target) != 0 {
		t.Fatalf("retry: %v, %d refs", err, tb.Refs(target))
	}
}

func TestTableRefusesBadTargets(t *testing.T) {
	ctx := context.Background()
	tb, dir := newTable(t)
	if err := os.Symlink("/", dir+"/mounts/root"); err != nil {
		t.Fatal(err)
	}
	var f fakeMount
	for _, target := range []string{"relative", dir + "/mounts/../outside/x", dir + "/outside/x", dir + "/mounts/root", dir + "/mounts/root/etc"} {
		if err := tb.Add(ctx, target, "a", f.mount("a")); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%q: %v, want HrInvalidArg", target, err)
		}
	}
	if f.mounted.Load() != 0 || len(tb.entries) != 0 {
		t.Fatalf("refused targets mounted %d times, left %d entries", f.mounted.Load(), len(tb.entries))
	}
}

func TestTableUnwindAllNewestFirst(t *testing.T) {
	ctx := context.Background()
	tb, dir := newTable(t)
	var order []string
	f := fakeMount{order: &order, mu: &sync.Mutex{}}
	for _, name := range []string{"p0", "p1", "scratch", "rootfs"} {
		if err := tb.Add(ctx, dir+"/mounts/"+name, name, f.mount(name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tb.Add(ctx, dir+"/mounts/p0", "p0", f.mount("p0")); err != nil {
		t.Fatal(err)
	}
	if err := tb.UnwindAll(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{"rootfs", "scratch", "p1", "p0"}
	if len(order) != len(want) {
		t.Fatalf("unwound %v, want %v", order, want)
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("unwound %v, want %v", order, want)
		}
	}
	if len(tb.entries) != 0 {
		t.Fatalf("entries left after unwind: %d", len(tb.entries))
	}
}

func TestTableConcurrentAddsMountOnce(t *testing.T) {
	ctx := context.Background()
	tb, dir := newTable(t)
	target := dir + "/mounts/m0"
	var f fakeMount
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := tb.Add(ctx, target, "a", f.mount("a")); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if f.mounted.Load() != 1 || tb.Refs(target) != 16 {
		t.Fatalf("%d mounts, %d refs; want 1, 16", f.mounted.Load(), tb.Refs(target))
	}
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := tb.Remove(ctx, target); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if f.unmounted.Load() != 1 || tb.Refs(target) != 0 || len(tb.entries) != 0 {
		t.Fatalf("%d unmounts, %d refs, %d entries", f.unmounted.Load(), tb.Refs(target), len(tb.entries))
	}
}

func TestMakeDirRemovesWhatItCreated(t *testing.T) {
	dir := t.TempDir()
	remove, err := MakeDir(filepath.Join(dir, "a", "b", "c"), 0o755)
	if err != nil {
		t.Fatal(err)
	}
	remove()
	if _, err := os.Stat(filepath.Join(dir, "a")); !os.IsNotExist(err) {
		t.Fatalf("a still there: %v", err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("pre-existing dir removed: %v", err)
	}
}
