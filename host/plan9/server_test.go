//go:build linux

package plan9

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/hugelgupf/p9/linux"
	"github.com/hugelgupf/p9/p9"

	"github.com/uvmgcs/gcs/host/plan9/plan9test"
)

// serve starts s on a unix socket and returns a 9p client of it.
func serve(t testing.TB, s *Server) *p9.Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "s")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := p9.NewClient(c, p9.WithMessageSize(512<<10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

func walk(t *testing.T, f p9.File, names ...string) p9.File {
	t.Helper()
	_, g, err := f.Walk(names)
	if err != nil {
		t.Fatalf("walk %v: %v", names, err)
	}
	return g
}

func isErrno(err error, want linux.Errno) bool {
	var e linux.Errno
	return errors.As(err, &e) && e == want
}

func TestServeReadWrite(t *testing.T) {
	rw, ro := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(ro, "hello"), []byte("hi\n"), 0o644)
	s := New()
	defer s.Close()
	if err := s.Export("rw", rw, false); err != nil {
		t.Fatal(err)
	}
	if err := s.Export("ro", ro, true); err != nil {
		t.Fatal(err)
	}
	cl := serve(t, s)

	top, err := cl.Attach("rw")
	if err != nil {
		t.Fatal(err)
	}
	f, _, _, err := walk(t, top).Create("out", p9.ReadWrite, 0o640, p9.NoUID, p9.NoGID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("written"), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if b, _ := os.ReadFile(filepath.Join(rw, "out")); string(b) != "written" {
		t.Fatalf("host sees %q", b)
	}
	if _, err := walk(t, top).Mkdir("d", 0o4755, p9.NoUID, 1234); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(rw, "d")); err != nil || fi.Mode()&os.ModeSetuid != 0 ||
		(os.Geteuid() == 0 && fi.Sys().(*syscall.Stat_t).Gid != 1234) {
		t.Fatalf("mkdir with a group and setuid: %v, %v", fi.Mode(), err)
	}
	d := walk(t, top, "d")
	if err := walk(t, top).RenameAt("out", d, "moved"); err != nil {
		t.Fatal(err)
	}
	if err := d.UnlinkAt("moved", 0); err != nil {
		t.Fatal(err)
	}
	if err := walk(t, top).UnlinkAt("d", unixATRemoveDir); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(rw); len(ents) != 0 {
		t.Fatalf("left on the host: %v", ents)
	}

	rot, err := cl.Attach("ro")
	if err != nil {
		t.Fatal(err)
	}
	h := walk(t, rot, "hello")
	if _, _, err := h.Open(p9.ReadOnly); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	if n, _ := h.ReadAt(buf, 0); string(buf[:n]) != "hi\n" {
		t.Fatalf("read %q", buf[:n])
	}
	for what, err := range map[string]error{
		"open for writing": func() error { _, _, err := walk(t, rot, "hello").Open(p9.WriteOnly); return err }(),
		"truncate":         func() error { _, _, err := walk(t, rot, "hello").Open(p9.ReadOnly | 01000); return err }(),
		"create": func() error {
			_, _, _, err := walk(t, rot).Create("x", p9.WriteOnly, 0o644, p9.NoUID, p9.NoGID)
			return err
		}(),
		"mkdir":   func() error { _, err := walk(t, rot).Mkdir("x", 0o755, p9.NoUID, p9.NoGID); return err }(),
		"unlink":  walk(t, rot).UnlinkAt("hello", 0),
		"rename":  walk(t, rot).RenameAt("hello", walk(t, rot), "x"),
		"setattr": walk(t, rot, "hello").SetAttr(p9.SetAttrMask{Size: true}, p9.SetAttr{}),
		"symlink": func() error { _, err := walk(t, rot).Symlink("hello", "x", p9.NoUID, p9.NoGID); return err }(),
	} {
		if !isErrno(err, linux.EROFS) {
			t.Errorf("%s on a read-only export: %v, want EROFS", what, err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(ro, "hello")); string(b) != "hi\n" {
		t.Fatalf("read-only file now %q", b)
	}
	if _, err := cl.Attach("nope"); !isErrno(err, linux.ENOENT) {
		t.Fatalf("attach to an unknown export: %v", err)
	}
}

const unixATRemoveDir = 0x200

// TestServeStaysInside: a symlink in the export, whatever it points to,
// is resolved by the guest; the server never walks through it.
func TestServeStaysInside(t *testing.T) {
	dir := t.TempDir()
	os.Symlink("/", filepath.Join(dir, "up"))
	os.Symlink("/etc/passwd", filepath.Join(dir, "passwd"))
	s := New()
	defer s.Close()
	s.Export("x", dir, false)
	top, err := serve(t, s).Attach("x")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := top.Walk([]string{"up", "etc"}); err == nil {
		t.Fatal("walked through a symlink out of the export")
	}
	if _, _, err := top.Walk([]string{".."}); err == nil {
		t.Fatal("walked to ..")
	}
	l := walk(t, top, "passwd")
	if _, _, err := l.Open(p9.ReadOnly); err == nil {
		t.Fatal("opened a symlink on the host")
	}
	if target, err := l.Readlink(); err != nil || target != "/etc/passwd" {
		t.Fatalf("readlink: %q, %v", target, err)
	}
}

// TestServeBigAndMany: a 64 MiB file reads back intact and a directory of
// 10,000 files lists completely across many readdir calls.
func TestServeBigAndMany(t *testing.T) {
	dir := t.TempDir()
	data := plan9test.Populate(t, dir)
	s := New()
	s.Export("d", dir, true)
	cl := serve(t, s)
	top, err := cl.Attach("d")
	if err != nil {
		t.Fatal(err)
	}
	big := walk(t, top, data.BigName)
	if _, _, err := big.Open(p9.ReadOnly); err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for off := int64(0); ; {
		n, err := big.ReadAt(buf, off)
		h.Write(buf[:n])
		off += int64(n)
		if n == 0 || err != nil {
			break
		}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != data.BigSHA256 {
		t.Fatalf("checksum %s, want %s", got, data.BigSHA256)
	}
	many := walk(t, top, data.ManyDir)
	if _, _, err := many.Open(p9.ReadOnly); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for off := uint64(0); ; {
		ents, err := many.Readdir(off, 8192)
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) == 0 {
			break
		}
		for _, e := range ents {
			seen[e.Name] = true
		}
		off = ents[len(ents)-1].Offset
	}
	if len(seen) != plan9test.SmallFiles {
		t.Fatalf("listed %d files, want %d", len(seen), plan9test.SmallFiles)
	}
	f := walk(t, many, "1234")
	f.Open(p9.ReadOnly)
	b := make([]byte, 10)
	if n, _ := f.ReadAt(b, 0); !bytes.Equal(b[:n], []byte("1234\n")) {
		t.Fatalf("file 1234 holds %q", b[:n])
	}
	cl.Close()
	s.Close()
	plan9test.WaitNoServerGoroutines(t)
}

// TestCloseEndsConnections: Close ends the listener and the connections
// still open, and waits for every goroutine.
func TestCloseEndsConnections(t *testing.T) {
	s := New()
	s.Export("d", t.TempDir(), false)
	cl := serve(t, s)
	if _, err := cl.Attach("d"); err != nil {
		t.Fatal(err)
	}
	if s.Conns() != 1 {
		t.Fatalf("%d connections, want 1", s.Conns())
	}
	s.Close()
	if s.Conns() != 0 {
		t.Fatalf("%d connections after Close", s.Conns())
	}
	plan9test.WaitNoServerGoroutines(t)
	if err := s.Export("e", t.TempDir(), false); !errors.Is(err, ErrClosed) {
		t.Fatalf("export after close: %v", err)
	}
}

func TestExportNames(t *testing.T) {
	s := New()
	defer s.Close()
	dir := t.TempDir()
	for _, bad := range []string{"", ".", "..", "a/b", "a,b", string(make([]byte, 256))} {
		if err := s.Export(bad, dir, false); err == nil {
			t.Errorf("export name %q accepted", bad)
		}
	}
	if err := s.Export("ok", filepath.Join(dir, "missing"), false); err == nil {
		t.Error("a missing directory exported")
	}
	if err := s.Export("ok", dir, false); err != nil {
		t.Fatal(err)
	}
	if err := s.Export("ok", dir, false); err == nil {
		t.Error("an export name taken twice")
	}
}

// TestUnexport: an attached guest keeps its files; a new attach fails.
func TestUnexport(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644)
	s := New()
	defer s.Close()
	s.Export("d", dir, false)
	cl := serve(t, s)
	top, err := cl.Attach("d")
	if err != nil {
		t.Fatal(err)
	}
	s.Unexport("d")
	if _, _, err := top.Walk([]string{"f"}); err != nil {
		t.Fatalf("walk after unexport: %v", err)
	}
	if _, err := cl.Attach("d"); !isErrno(err, linux.ENOENT) {
		t.Fatalf("attach after unexport: %v", err)
	}
}
