package overlay

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/containerd/errdefs"
	"github.com/uvmgcs/gcs/guest/storage/mounts"
	"github.com/uvmgcs/gcs/guest/storage/storagetest"
	"github.com/uvmgcs/gcs/protocol"
)

// setup returns Layers whose only allowed root is a fresh directory, that
// root, and a check at the end that the table unwinds cleanly.
func setup(t *testing.T) (*Layers, *mounts.Table, string) {
	t.Helper()
	storagetest.RequireRoot(t)
	root := filepath.Join(storagetest.Dir(t), "run")
	table, err := mounts.New([]string{root})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := table.UnwindAll(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return NewLayers(table), table, root
}

// layer creates a layer directory holding files and returns it.
func layer(t *testing.T, root, name string, files map[string]string) protocol.Layer {
	t.Helper()
	dir := filepath.Join(root, "layers", name)
	storagetest.WriteTree(t, dir, files)
	return protocol.Layer{ID: name, Path: dir}
}

// whiteout hides name of the layers below in the layer dir.
func whiteout(t *testing.T, dir, name string) {
	t.Helper()
	if err := unix.Mknod(filepath.Join(dir, name), unix.S_IFCHR|0o000, 0); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestThreeLayersWithWhiteout(t *testing.T) {
	ctx := context.Background()
	layers, table, root := setup(t)
	top := layer(t, root, "top", map[string]string{"etc/shared": "top\n"})
	mid := layer(t, root, "mid", map[string]string{"etc/mid": "mid\n"})
	base := layer(t, root, "base", map[string]string{"etc/shared": "base\n", "etc/gone": "base\n", "bin/sh": "sh\n"})
	whiteout(t, filepath.Join(mid.Path, "etc"), "gone")
	c := &protocol.CombinedLayers{
		ContainerID:       "c1",
		ContainerRootPath: root + "/gcs/c/c1/rootfs",
		Layers:            []protocol.Layer{top, mid, base},
		ScratchPath:       root + "/mounts/scratch",
	}
	if err := layers.Add(ctx, c); err != nil {
		t.Fatal(err)
	}
	rootfs := c.ContainerRootPath
	if got := read(t, rootfs+"/etc/shared"); got != "top\n" {
		t.Errorf("etc/shared = %q: the first layer must be on top", got)
	}
	if got := read(t, rootfs+"/etc/mid") + read(t, rootfs+"/bin/sh"); got != "mid\nsh\n" {
		t.Errorf("lower files: %q", got)
	}
	if _, err := os.Stat(rootfs + "/etc/gone"); !os.IsNotExist(err) {
		t.Errorf("whited-out file visible: %v", err)
	}
	if err := os.WriteFile(rootfs+"/etc/new", []byte("new\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := read(t, c.ScratchPath+"/upper/etc/new"); got != "new\n" {
		t.Errorf("write did not land in the scratch upper dir: %q", got)
	}
	if _, err := os.Stat(c.ScratchPath + "/work"); err != nil {
		t.Errorf("work dir: %v", err)
	}

	// Refcounts: a second add shares the mount.
	if err := layers.Add(ctx, c); err != nil {
		t.Fatal(err)
	}
	if table.Refs(rootfs) != 2 || len(storagetest.MountsUnder(t, rootfs)) != 1 {
		t.Fatalf("refs %d, mounts %v", table.Refs(rootfs), storagetest.MountsUnder(t, rootfs))
	}
	if err := layers.Remove(ctx, c); err != nil || !storagetest.IsMounted(t, rootfs) {
		t.Fatalf("first remove: %v, mounted %t", err, storagetest.IsMounted(t, rootfs))
	}
	if err := layers.Remove(ctx, c); err != nil || storagetest.IsMounted(t, rootfs) {
		t.Fatalf("second remove: %v, mounted %t", err, storagetest.IsMounted(t, rootfs))
	}
	if _, err := os.Stat(root + "/gcs"); !os.IsNotExist(err) {
		t.Errorf("root path directories left: %v", err)
	}
	if got := read(t, c.ScratchPath+"/upper/etc/new"); got != "new\n" {
		t.Errorf("scratch contents must outlive the overlay: %q", got)
	}
}

func TestReadOnly(t *testing.T) {
	ctx := context.Background()
	layers, _, root := setup(t)
	a := layer(t, root, "a", map[string]string{"a": "a"})
	b := layer(t, root, "b", map[string]string{"b": "b"})
	for _, tc := range []struct {
		name   string
		layers []protocol.Layer
	}{{"two layers", []protocol.Layer{a, b}}, {"one layer", []protocol.Layer{a}}} {
		c := &protocol.CombinedLayers{ContainerRootPath: root + "/gcs/ro/rootfs", Layers: tc.layers}
		if err := layers.Add(ctx, c); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := read(t, c.ContainerRootPath+"/a"); got != "a" {
			t.Errorf("%s: a = %q", tc.name, got)
		}
		if err := os.WriteFile(c.ContainerRootPath+"/x", nil, 0o644); !errors.Is(err, unix.EROFS) {
			t.Errorf("%s: write to a read-only root: %v", tc.name, err)
		}
		if err := layers.Remove(ctx, c); err != nil {
			t.Fatal(err)
		}
		if storagetest.IsMounted(t, c.ContainerRootPath) {
			t.Fatalf("%s: still mounted", tc.name)
		}
	}
}

// TestHundredLayers: 100 layers with long paths need far more than
// mount(2)'s one page of options.
func TestHundredLayers(t *testing.T) {
	ctx := context.Background()
	layers, _, root := setup(t)
	long := strings.Repeat("l", 120)
	var ls []protocol.Layer
	for i := range 100 {
		name := fmt.Sprintf("%s-%03d", long, i)
		ls = append(ls, layer(t, root, name, map[string]string{
			fmt.Sprintf("f%03d", i): fmt.Sprint(i),
			"which":                 fmt.Sprint(i),
		}))
	}
	var total int
	for _, l := range ls {
		total += len(l.Path) + 1
	}
	if total <= 4096 {
		t.Fatalf("layer paths take %d bytes; the test needs more than a page", total)
	}
	c := &protocol.CombinedLayers{ContainerRootPath: root + "/gcs/c/big/rootfs", Layers: ls, ScratchPath: root + "/mounts/big"}
	if err := layers.Add(ctx, c); err != nil {
		t.Fatal(err)
	}
	if got := read(t, c.ContainerRootPath+"/which"); got != "0" {
		t.Errorf("which = %q, want the first layer's", got)
	}
	for _, f := range []string{"f000", "f050", "f099"} {
		if _, err := os.Stat(c.ContainerRootPath + "/" + f); err != nil {
			t.Error(err)
		}
	}
	if err := layers.Remove(ctx, c); err != nil {
		t.Fatal(err)
	}
}

// TestClassicMount covers the mount(2) path kernels without lowerdir+ take.
func TestClassicMount(t *testing.T) {
	storagetest.RequireRoot(t)
	dir := storagetest.Dir(t)
	a := filepath.Join(dir, "a")
	b := filepath.Join(dir, "b")
	storagetest.WriteTree(t, a, map[string]string{"f": "a"})
	storagetest.WriteTree(t, b, map[string]string{"f": "b", "g": "b"})
	target := filepath.Join(dir, "root")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	s := Spec{Lowers: []string{a, b}, Upper: filepath.Join(dir, "up"), Work: filepath.Join(dir, "work")}
	for _, d := range []string{s.Upper, s.Work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := mountClassic(target, s); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(target, unix.MNT_DETACH) })
	if got := read(t, target+"/f") + read(t, target+"/g"); got != "ab" {
		t.Errorf("classic overlay reads %q", got)
	}
	if err := mounts.Unmount(target); err != nil {
		t.Fatal(err)
	}

	many := Spec{Lowers: make([]string, 100)}
	for i := range many.Lowers {
		many.Lowers[i] = filepath.Join(dir, strings.Repeat("x", 60))
	}
	if err := mountClassic(target, many); !errors.Is(err, errdefs.ErrNotImplemented) {
		t.Errorf("too long for mount(2): %v", err)
	}
	if err := mountClassic(target, Spec{Lowers: []string{a, dir + "/with:colon"}}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("colon in a path: %v", err)
	}
}

func TestRefusedAndFailedAddsLeaveNothing(t *testing.T) {
	ctx := context.Background()
	layers, table, root := setup(t)
	good := layer(t, root, "good", map[string]string{"f": "f"})
	good2 := layer(t, root, "good2", map[string]string{"g": "g"})
	outside := t.TempDir()
	if err := os.Symlink(outside, root+"/layers/escape"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, root+"/mounts"); err != nil {
		t.Fatal(err)
	}
	rootfs := root + "/gcs/c/x/rootfs"
	for _, tc := range []struct {
		name string
		c    protocol.CombinedLayers
		hr   error
	}{
		{"no layers", protocol.CombinedLayers{ContainerRootPath: rootfs}, errdefs.ErrInvalidArgument},
		{"relative root", protocol.CombinedLayers{ContainerRootPath: "gcs/rootfs", Layers: []protocol.Layer{good}}, errdefs.ErrInvalidArgument},
		{"root traversal", protocol.CombinedLayers{ContainerRootPath: root + "/gcs/../../../etc", Layers: []protocol.Layer{good}}, errdefs.ErrInvalidArgument},
		{"root outside", protocol.CombinedLayers{ContainerRootPath: outside + "/rootfs", Layers: []protocol.Layer{good}}, errdefs.ErrInvalidArgument},
		{"layer traversal", protocol.CombinedLayers{ContainerRootPath: rootfs, Layers: []protocol.Layer{good, {Path: root + "/layers/../../.."}}}, errdefs.ErrInvalidArgument},
		{"layer outside", protocol.CombinedLayers{ContainerRootPath: rootfs, Layers: []protocol.Layer{good, {Path: "/etc"}}}, errdefs.ErrInvalidArgument},
		{"layer symlink escape", protocol.CombinedLayers{ContainerRootPath: rootfs, Layers: []protocol.Layer{good, {Path: root + "/layers/escape/x"}}}, errdefs.ErrInvalidArgument},
		{"scratch symlink escape", protocol.CombinedLayers{ContainerRootPath: rootfs, Layers: []protocol.Layer{good}, ScratchPath: root + "/mounts/s"}, errdefs.ErrInvalidArgument},
		{"missing layer", protocol.CombinedLayers{ContainerRootPath: rootfs, Layers: []protocol.Layer{good, good2, {Path: root + "/layers/missing"}}}, nil},
		{"missing single layer", protocol.CombinedLayers{ContainerRootPath: rootfs, Layers: []protocol.Layer{{Path: root + "/layers/missing"}}}, nil},
	} {
		err := layers.Add(ctx, &tc.c)
		if err == nil || (tc.hr != nil && !errors.Is(err, tc.hr)) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.hr)
		}
		if left := storagetest.MountsUnder(t, root); len(left) != 0 {
			t.Fatalf("%s: mounts left: %v", tc.name, left)
		}
		if _, err := os.Stat(root + "/gcs"); !os.IsNotExist(err) {
			t.Errorf("%s: directories left: %v", tc.name, err)
		}
		if table.Refs(tc.c.ContainerRootPath) != 0 {
			t.Errorf("%s: reference left", tc.name)
		}
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("something was created outside the roots: %v", ents)
	}
}

func TestLowerdirPlusProbe(t *testing.T) {
	storagetest.RequireRoot(t)
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		t.Fatal(err)
	}
	release := unix.ByteSliceToString(uts.Release[:])
	var major, minor int
	fmt.Sscanf(release, "%d.%d", &major, &minor)
	if want := major > 6 || (major == 6 && minor >= 8); lowerdirPlus() != want {
		t.Fatalf("kernel %s: lowerdirPlus() = %t, want %t", release, !want, want)
	}
}
