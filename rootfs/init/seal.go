package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// sealedSeals are the seals that make a memfd's contents immutable for its
// whole life: no write (through write(2) or a shared mapping), no growth, no
// shrinking, and no removal of these seals. libcontainer accepts a
// /proc/self/exe with all four as a safe binary (exeseal.IsCloned) and then
// skips its own per-process protection of the binary.
const sealedSeals = unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE

// mfdExec is MFD_EXEC (Linux 6.3): asks for an executable memfd where
// vm.memfd_noexec would make them non-executable by default.
const mfdExec = 0x10

// sealedBinary is the agent's binary moved into a sealed memfd.
type sealedBinary struct {
	f       *os.File
	removed bool // the file it came from was removed from the initramfs
}

// path is what to exec: the kernel resolves it before it closes the memfd
// (close-on-exec), and the new image keeps the memfd as its executable.
func (s *sealedBinary) path() string { return "/proc/self/fd/" + strconv.Itoa(int(s.f.Fd())) }

// sealBinary copies the binary at path into a memfd, seals it against any
// change, and removes path when it lives in the initramfs (ramfs or tmpfs),
// so that the VM holds one copy of the agent instead of two.
//
// A container must never be able to change the binary its init runs from
// (CVE-2019-5736: a process in the container opens /proc/<init>/exe for
// writing while "gcs init" sets it up). The agent, started from the sealed
// memfd, has a /proc/self/exe the kernel refuses every write to, from any
// process, for as long as it exists; libcontainer checks the seals before
// each start and exec. Without this the agent would make a sealed copy of
// its own at start, a second copy of the binary in RAM beside the
// initramfs file.
//
// A root that is not an initramfs (a disk) keeps its file: its page cache
// is reclaimable, and the disk's content is not the init's to change.
func sealBinary(path string) (*sealedBinary, error) {
	src, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		return nil, err
	}
	fd, err := unix.MemfdCreate("gcs", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING|mfdExec)
	if errors.Is(err, unix.EINVAL) {
		fd, err = unix.MemfdCreate("gcs", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	}
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "memfd:gcs")
	fail := func(err error) (*sealedBinary, error) {
		f.Close()
		return nil, err
	}
	if n, err := io.Copy(f, src); err != nil {
		return fail(fmt.Errorf("copy %s: %w", path, err))
	} else if n != st.Size() {
		return fail(fmt.Errorf("copy %s: %d of %d bytes", path, n, st.Size()))
	}
	if err := f.Chmod(0o555); err != nil {
		return fail(err)
	}
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, sealedSeals); err != nil {
		return fail(fmt.Errorf("seal: %w", err))
	}
	if seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0); err != nil || seals&sealedSeals != sealedSeals {
		return fail(fmt.Errorf("seals 0x%x after sealing: %v", seals, err))
	}
	s := &sealedBinary{f: f}
	if err := unix.Access(s.path(), unix.X_OK); err != nil {
		return fail(fmt.Errorf("the memfd is not executable: %w", err))
	}
	var fs unix.Statfs_t
	if err := unix.Fstatfs(int(src.Fd()), &fs); err == nil && (fs.Type == unix.RAMFS_MAGIC || fs.Type == unix.TMPFS_MAGIC) {
		if err := os.Remove(path); err != nil {
			logf("%s stays in the initramfs: %v", path, err)
		} else {
			s.removed = true
		}
	}
	return s, nil
}
