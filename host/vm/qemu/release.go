//go:build linux

package qemu

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ReleaseBootFiles implements vm.BootReleaser. QEMU maps the kernel and
// initrd files and keeps those mappings for the life of the VM: they are
// the images a machine reset would load again, and -no-reboot means there
// is none. Once the guest has booted they are never read, yet their pages
// count in QEMU's resident set (about 24 MiB for the UVM kernel). The same
// holds for the read-only data of QEMU's binary and libraries (relocation
// and symbol tables the dynamic loader read once at start-up): about
// 10 MiB of Debian's QEMU, of which about 0.3 MiB is read again by an idle
// VM. The pages are clean file pages, so MADV_PAGEOUT (process_madvise,
// Linux 5.10) drops them without I/O; were they read again they would come
// back from the file. Pages another process maps too (a second VM on the
// same kernel file, a second QEMU) are shared and stay.
func (v *VM) ReleaseBootFiles() error {
	v.mu.Lock()
	pid, running, attached := 0, v.state == stateRunning, v.att != nil
	if v.cmd != nil && v.cmd.Process != nil {
		pid = v.cmd.Process.Pid
	}
	v.mu.Unlock()
	if !running || attached || pid == 0 {
		return nil
	}
	var files []string
	for _, f := range []string{v.cfg.Kernel, v.cfg.Initrd} {
		if r, err := filepath.EvalSymlinks(f); err == nil {
			files = append(files, r)
		}
	}
	maps, err := os.Open("/proc/" + strconv.Itoa(pid) + "/maps")
	if err != nil {
		return fmt.Errorf("release boot files: %w", err)
	}
	ranges, err := releasableMappings(maps, files)
	maps.Close()
	if err != nil || len(ranges) == 0 {
		return err
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return fmt.Errorf("release boot files: pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(pidfd)
	// struct iovec of addresses in QEMU, never dereferenced here.
	type remoteIovec struct{ base, len uintptr }
	iov := make([]remoteIovec, len(ranges))
	for i, r := range ranges {
		iov[i] = remoteIovec{r.start, r.end - r.start}
	}
	_, _, errno := unix.Syscall6(unix.SYS_PROCESS_MADVISE, uintptr(pidfd),
		uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)), unix.MADV_PAGEOUT, 0, 0)
	if errno != 0 {
		return fmt.Errorf("release boot files: process_madvise: %w", errno)
	}
	return nil
}

// addrRange is a mapping's [start, end) in another process.
type addrRange struct{ start, end uintptr }

// releasableMappings returns the address ranges of a /proc/PID/maps
// listing that map one of files (absolute paths, symlinks resolved) or map
// any file read-only and not executable: QEMU's and its libraries'
// start-up data. Executable text is left alone (the idle VM runs some of
// it), and so is every writable mapping (the guest's RAM is a memfd).
func releasableMappings(maps io.Reader, files []string) ([]addrRange, error) {
	var out []addrRange
	sc := bufio.NewScanner(maps)
	for sc.Scan() {
		// start-end perms offset dev inode path (the path may hold spaces)
		f := strings.SplitN(sc.Text(), " ", 6)
		if len(f) < 6 {
			continue
		}
		path := strings.TrimLeft(f[5], " ")
		if !slices.Contains(files, path) && !(strings.HasPrefix(path, "/") && f[1] == "r--p") {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if !ok || err1 != nil || err2 != nil || end <= start {
			return nil, fmt.Errorf("maps: bad range %q", f[0])
		}
		out = append(out, addrRange{uintptr(start), uintptr(end)})
	}
	return out, sc.Err()
}
