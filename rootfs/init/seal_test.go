package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSealBinary seals a copy of a real executable: the copy runs, every
// way of changing it is refused, and the original is removed only from a
// tmpfs (an initramfs stand-in), never from a disk.
func TestSealBinary(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, dir   string
		wantRemoved bool
	}{
		{"tmpfs", "/dev/shm", true},
		{"disk", t.TempDir(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var fs unix.Statfs_t
			if err := unix.Statfs(tc.dir, &fs); err != nil {
				t.Fatal(err)
			}
			if isTmpfs := fs.Type == unix.TMPFS_MAGIC || fs.Type == unix.RAMFS_MAGIC; isTmpfs != tc.wantRemoved {
				t.Skipf("SKIP (loud): %s is not the file system kind this case needs (type 0x%x)", tc.dir, fs.Type)
			}
			dir, err := os.MkdirTemp(tc.dir, "uvmgcs-seal-test-")
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(dir)
			path := filepath.Join(dir, "gcs")
			if err := os.WriteFile(path, want, 0o755); err != nil {
				t.Fatal(err)
			}
			s, err := sealBinary(path)
			if err != nil {
				t.Fatal(err)
			}
			defer s.f.Close()
			if _, err := os.Stat(path); s.removed != tc.wantRemoved || errors.Is(err, os.ErrNotExist) != tc.wantRemoved {
				t.Errorf("removed %v, stat %v; want removed %v", s.removed, err, tc.wantRemoved)
			}
			got, err := io.ReadAll(io.NewSectionReader(s.f, 0, int64(len(want))+1))
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("memfd holds %d bytes (%v), want the binary's %d", len(got), err, len(want))
			}
			if _, err := s.f.WriteAt([]byte{0}, 0); !errors.Is(err, unix.EPERM) {
				t.Errorf("write to the sealed memfd: %v, want EPERM", err)
			}
			if err := s.f.Truncate(0); !errors.Is(err, unix.EPERM) {
				t.Errorf("truncate of the sealed memfd: %v, want EPERM", err)
			}
			if _, err := unix.Mmap(int(s.f.Fd()), 0, 4096, unix.PROT_WRITE, unix.MAP_SHARED); !errors.Is(err, unix.EPERM) {
				t.Errorf("shared writable mapping of the sealed memfd: %v, want EPERM", err)
			}
			if _, err := unix.FcntlInt(s.f.Fd(), unix.F_ADD_SEALS, unix.F_SEAL_SEAL); err == nil {
				// F_SEAL_SEAL makes further F_ADD_SEALS fail.
				t.Error("adding a seal after F_SEAL_SEAL succeeded")
			}
			// Reopening through /proc for writing (what CVE-2019-5736 did
			// to /proc/<pid>/exe) is refused too.
			if w, err := os.OpenFile(s.path(), os.O_WRONLY, 0); err == nil {
				_, err = w.Write([]byte{0})
				w.Close()
				if !errors.Is(err, unix.EPERM) {
					t.Errorf("write through %s: %v, want EPERM", s.path(), err)
				}
			}
			// The copy is executable: run it (this test binary) to list nothing.
			cmd := exec.Command(s.path(), "-test.run=^$")
			cmd.ExtraFiles = []*os.File{s.f}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("run the sealed copy: %v: %s", err, out)
			}
		})
	}
}
