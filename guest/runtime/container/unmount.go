package container

import (
	"bufio"
	"fmt"
	"os"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// unmountUnder detaches every mount at or below dir, deepest first, so a
// recursive removal of dir never reaches into a mounted file system (a
// container's root on its scratch layer).
func unmountUnder(dir string) error {
	// The calling thread's mount table: the process's main thread may be
	// parked in a container's mount namespace (libcontainer enters one on a
	// locked thread that never returns to the pool; the Go runtime cannot
	// end the main thread, so it parks it), and /proc/self is that
	// thread's view.
	f, err := os.Open("/proc/thread-self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	var points []string
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountPath(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			points = append(points, mp)
		}
	}
	if err := s.Err(); err != nil {
		return err
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	for _, mp := range points {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
			return fmt.Errorf("unmount %s: %w", mp, err)
		}
	}
	return nil
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// RootIsInitramfs reports whether / is the kernel's initial rootfs (an
// initramfs never switched away from), where pivot_root fails.
func RootIsInitramfs(mountinfo string) bool {
	b, err := os.ReadFile(mountinfo)
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		// mountinfo: id parent major:minor root mountpoint opts... - fstype source superopts
		if len(f) < 10 || f[4] != "/" {
			continue
		}
		for i, x := range f {
			if x == "-" && i+1 < len(f) {
				if f[i+1] == "rootfs" {
					return true
				}
				break
			}
		}
	}
	return false
}
