package layers

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"golang.org/x/sys/unix"
)

// overlayLayer writes a snapshot directory the way containerd's overlayfs
// snapshotter keeps one: a file, a whiteout (a 0:0 character device) and
// an opaque directory (trusted.overlay.opaque=y).
func overlayLayer(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("whiteouts and trusted xattrs need root")
	}
	dir := filepath.Join(t.TempDir(), "fs")
	if err := os.MkdirAll(filepath.Join(dir, "opq"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(filepath.Join(dir, "wh"), unix.S_IFCHR|0o644, 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(filepath.Join(dir, "opq"), "trusted.overlay.opaque", []byte("y"), 0); err != nil {
		t.Fatal(err)
	}
	return dir
}

func dump(t *testing.T, img, path string) string {
	t.Helper()
	out, err := exec.Command("dump.erofs", "--path="+path, img).CombinedOutput()
	if err != nil {
		t.Fatalf("dump.erofs %s: %v: %s", path, err, out)
	}
	return string(out)
}

// TestConvertKeepsOverlayMarks: the erofs image holds the whiteout as a
// character device and the opaque directory's xattr.
func TestConvertKeepsOverlayMarks(t *testing.T) {
	src := overlayLayer(t)
	img := filepath.Join(t.TempDir(), "l.erofs")
	if err := Convert(context.Background(), src, img); err != nil {
		t.Fatal(err)
	}
	if d := dump(t, img, "/wh"); !regexp.MustCompile(`char dev`).MatchString(d) {
		t.Fatalf("the whiteout is not a character device:\n%s", d)
	}
	if d := dump(t, img, "/opq"); !regexp.MustCompile(`Xattr size: [1-9]`).MatchString(d) {
		t.Fatalf("the opaque directory lost its xattr:\n%s", d)
	}
}

// TestCache: the first request converts, the second hits; a changed
// snapshot directory gets a new image; Prune removes images of snapshots
// that are gone.
func TestCache(t *testing.T) {
	src := overlayLayer(t)
	c := NewCache(filepath.Join(t.TempDir(), "cache"))
	ctx := context.Background()
	p1, hit, err := c.Disk(ctx, src)
	if err != nil || hit {
		t.Fatalf("first Disk: %s hit=%v %v", p1, hit, err)
	}
	p2, hit, err := c.Disk(ctx, src)
	if err != nil || !hit || p2 != p1 {
		t.Fatalf("second Disk: %s hit=%v %v, want a hit on %s", p2, hit, err, p1)
	}
	if err := os.WriteFile(filepath.Join(src, "new"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	p3, hit, err := c.Disk(ctx, src)
	if err != nil || hit || p3 == p1 {
		t.Fatalf("Disk of a changed directory: %s hit=%v %v, want a new image", p3, hit, err)
	}
	if n, err := c.Prune(); err != nil || n != 1 {
		t.Fatalf("Prune after a change: removed %d, %v; want the stale image removed", n, err)
	}
	if err := os.RemoveAll(src); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Prune(); err != nil || n != 1 {
		t.Fatalf("Prune after the snapshot's removal: removed %d, %v", n, err)
	}
	left, _ := filepath.Glob(filepath.Join(c.Dir(), "*"))
	if len(left) != 0 {
		t.Fatalf("left in the cache: %v", left)
	}
	if _, _, err := c.Disk(ctx, src); err == nil {
		t.Fatal("Disk of a missing directory succeeded")
	}
}
