// Package storagetest owns the fixtures storage tests share: a scratch
// directory that is checked for leaked mounts and loop devices when the
// test ends, filesystem images built with the system's mkfs tools, loop
// devices that detach themselves, and a fake sysfs with SCSI disks in it.
// Tests run in the host's mount namespace, so every helper undoes what it
// did in t.Cleanup.
package storagetest

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// RequireRoot skips t, loudly, unless the test runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIP (loud): mounting needs root")
	}
}

// Dir returns a fresh directory (with symbolic links resolved, as
// mountinfo shows it) and registers a check, run after every cleanup
// registered later, that nothing is mounted beneath it and no loop device
// is backed by a file beneath it. Mounts left behind are detached so they
// do not outlive the test.
func Dir(t testing.TB) string {
	t.Helper()
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if left := MountsUnder(t, dir); len(left) > 0 {
			t.Errorf("mounts left under %s: %v", dir, left)
			for i := len(left) - 1; i >= 0; i-- {
				_ = unix.Unmount(left[i], unix.MNT_DETACH)
			}
		}
		// Autoclear detaches a loop device once its last user is gone,
		// which can trail the unmount a little.
		deadline := time.Now().Add(5 * time.Second)
		for {
			left := LoopsUnder(t, dir)
			if len(left) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("loop devices still attached to images under %s: %v", dir, left)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	return dir
}

// MountsUnder returns the mount points at or beneath dir in this
// process's mount table, in mount order.
func MountsUnder(t testing.TB, dir string) []string {
	t.Helper()
	ms, err := ReadMountInfo("/proc/thread-self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range ms {
		if m.MountPoint == dir || strings.HasPrefix(m.MountPoint, dir+"/") {
			out = append(out, m.MountPoint)
		}
	}
	return out
}

// Mount is one line of a mountinfo file.
type Mount struct {
	// Root is the mount's root within its file system; MountPoint where
	// it is mounted.
	Root, MountPoint string
	// Options are the per-mount options ("rw,nosuid,relatime").
	Options string
	// FSType, Source and SuperOptions describe the file system.
	FSType, Source, SuperOptions string
}

// ReadMountInfo parses a mountinfo file, in mount order. Read the calling
// thread's (/proc/thread-self/mountinfo): after a container starts, the
// main thread (/proc/self) may be parked in the container's namespace.
func ReadMountInfo(path string) ([]Mount, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Mount
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent major:minor root mountpoint opts [optional...] - fstype source superopts
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		a, b := strings.Fields(pre), strings.Fields(post)
		if !ok || len(a) < 6 || len(b) < 3 {
			return nil, fmt.Errorf("%s: line %q", path, sc.Text())
		}
		out = append(out, Mount{Root: unescape(a[3]), MountPoint: unescape(a[4]), Options: a[5],
			FSType: b[0], Source: unescape(b[1]), SuperOptions: b[2]})
	}
	return out, sc.Err()
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// LoopsUnder returns the loop devices whose backing file is beneath dir.
func LoopsUnder(t testing.TB, dir string) []string {
	t.Helper()
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if backing := strings.TrimSpace(string(b)); strings.HasPrefix(backing, dir+"/") {
			out = append(out, filepath.Base(filepath.Dir(filepath.Dir(f)))+"="+backing)
		}
	}
	sort.Strings(out)
	return out
}

// IsMounted reports whether path is a mount point.
func IsMounted(t testing.TB, path string) bool {
	t.Helper()
	for _, mp := range MountsUnder(t, path) {
		if mp == path {
			return true
		}
	}
	return false
}

// WriteTree creates files (path relative to dir → contents) beneath dir.
func WriteTree(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// tool returns the path of a mkfs program, skipping t loudly without it.
func tool(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("SKIP (loud): %s not installed (Debian package %s)", name, pkg)
	}
	return p
}

// Ext4Image builds an 8 MiB ext4 image in dir holding files and returns
// its path.
func Ext4Image(t testing.TB, dir, name string, files map[string]string) string {
	t.Helper()
	mkfs := tool(t, "mkfs.ext4", "e2fsprogs")
	src := filepath.Join(dir, name+".src")
	WriteTree(t, src, files)
	img := filepath.Join(dir, name+".img")
	run(t, mkfs, "-q", "-F", "-d", src, img, "8M")
	return img
}

// EROFSImage builds an erofs image in dir holding files and returns its
// path.
func EROFSImage(t testing.TB, dir, name string, files map[string]string) string {
	t.Helper()
	mkfs := tool(t, "mkfs.erofs", "erofs-utils")
	src := filepath.Join(dir, name+".src")
	WriteTree(t, src, files)
	img := filepath.Join(dir, name+".img")
	run(t, mkfs, "--quiet", img, src)
	return img
}

// BlankImage creates a zero-filled image of size bytes in dir.
func BlankImage(t testing.TB, dir, name string, size int64) string {
	t.Helper()
	img := filepath.Join(dir, name+".img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return img
}

func run(t testing.TB, prog string, args ...string) {
	t.Helper()
	if out, err := exec.Command(prog, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", prog, strings.Join(args, " "), err, out)
	}
}

// AttachLoop attaches img to a free loop device with LOOP_CONFIGURE and
// autoclear, and returns the device's name (loopN). The device detaches
// itself when the test's descriptor is closed (in t.Cleanup) and nothing
// has it mounted.
func AttachLoop(t testing.TB, img string, readOnly bool) string {
	t.Helper()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Skipf("SKIP (loud): no loop devices: %v", err)
	}
	defer ctl.Close()
	mode, flags := os.O_RDWR, uint32(unix.LO_FLAGS_AUTOCLEAR)
	if readOnly {
		mode, flags = os.O_RDONLY, flags|unix.LO_FLAGS_READ_ONLY
	}
	for attempt := 0; ; attempt++ {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			t.Fatalf("LOOP_CTL_GET_FREE: %v", err)
		}
		name := fmt.Sprintf("loop%d", n)
		dev, err := os.OpenFile("/dev/"+name, os.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatalf("open /dev/%s: %v", name, err)
		}
		file, err := os.OpenFile(img, mode|unix.O_CLOEXEC, 0)
		if err != nil {
			dev.Close()
			t.Fatal(err)
		}
		cfg := unix.LoopConfig{Fd: uint32(file.Fd()), Info: unix.LoopInfo64{Flags: flags}}
		copy(cfg.Info.File_name[:len(cfg.Info.File_name)-1], img)
		err = unix.IoctlLoopConfigure(int(dev.Fd()), &cfg)
		file.Close() // the loop device holds its own reference
		if err == unix.EBUSY && attempt < 20 {
			dev.Close() // another process took it first
			continue
		}
		if err != nil {
			dev.Close()
			t.Fatalf("LOOP_CONFIGURE /dev/%s: %v", name, err)
		}
		t.Cleanup(func() { dev.Close() })
		return name
	}
}

// SCSIHost adds a virtio-scsi host to the fake sysfs at sys: host number
// host, whose device sits at PCI address pci ("0000:00:05.0").
func SCSIHost(t testing.TB, sys string, host uint32, pci, procName string) {
	t.Helper()
	name := fmt.Sprintf("host%d", host)
	devDir := filepath.Join(sys, "devices", "pci0000:00", pci, fmt.Sprintf("virtio%d", host), name)
	classDir := filepath.Join(devDir, "scsi_host", name)
	WriteTree(t, classDir, map[string]string{"proc_name": procName + "\n"})
	link := filepath.Join(sys, "class", "scsi_host", name)
	symlink(t, classDir, link)
}

// SCSIDisk adds a disk at SCSI address host:0:0:lun to the fake sysfs,
// named disk, with partitions 1..partitions, and returns the device's
// sysfs directory.
func SCSIDisk(t testing.TB, sys string, host uint32, lun uint8, disk string, partitions int) string {
	t.Helper()
	addr := fmt.Sprintf("%d:0:0:%d", host, lun)
	devDir := filepath.Join(sys, "devices", "fake", fmt.Sprintf("host%d", host), addr)
	files := map[string]string{"delete": ""}
	for p := 1; p <= partitions; p++ {
		part := disk + strconv.Itoa(p)
		if last := disk[len(disk)-1]; last >= '0' && last <= '9' {
			part = disk + "p" + strconv.Itoa(p)
		}
		files[filepath.Join("block", disk, part, "partition")] = strconv.Itoa(p)
	}
	files[filepath.Join("block", disk, "dev")] = "8:0"
	WriteTree(t, devDir, files)
	symlink(t, devDir, filepath.Join(sys, "bus", "scsi", "devices", addr))
	return devDir
}

func symlink(t testing.TB, target, link string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(filepath.Dir(link), target)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(rel, link); err != nil {
		t.Fatal(err)
	}
}

// BlockNode creates a block device node dev/name (any numbers: tests only
// stat it).
func BlockNode(t testing.TB, dev, name string) {
	t.Helper()
	if err := os.MkdirAll(dev, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(filepath.Join(dev, name), unix.S_IFBLK|0o600, int(unix.Mkdev(7, 255))); err != nil {
		t.Skipf("SKIP (loud): cannot create device nodes: %v", err)
	}
}
