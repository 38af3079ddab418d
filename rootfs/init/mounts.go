package main

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

type mount struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
	mode                   os.FileMode // of the mount point, created if missing
}

const (
	nosuidNodev  = unix.MS_NOSUID | unix.MS_NODEV
	nosuidNoexec = unix.MS_NOSUID | unix.MS_NOEXEC
	restricted   = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
)

// kernelMounts come first: nothing else works without them.
var kernelMounts = []mount{
	{"proc", "/proc", "proc", restricted, "", 0o555},
	{"sysfs", "/sys", "sysfs", restricted, "", 0o555},
	{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755", 0o755},
}

var otherMounts = []mount{
	{"devpts", "/dev/pts", "devpts", nosuidNoexec, "newinstance,ptmxmode=0666,mode=0620", 0o755},
	{"shm", "/dev/shm", "tmpfs", nosuidNodev, "mode=1777", 0o1777},
	{"tmpfs", "/run", "tmpfs", nosuidNodev, "mode=0755", 0o755},
	{"tmpfs", "/tmp", "tmpfs", nosuidNodev, "mode=1777", 0o1777},
}

var devLinks = [][2]string{
	{"/proc/self/fd", "/dev/fd"},
	{"/proc/self/fd/0", "/dev/stdin"},
	{"/proc/self/fd/1", "/dev/stdout"},
	{"/proc/self/fd/2", "/dev/stderr"},
}

func (m mount) do() error {
	if err := os.MkdirAll(m.target, m.mode); err != nil {
		return fmt.Errorf("mount %s: %w", m.target, err)
	}
	if err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data); err != nil {
		return fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err)
	}
	return nil
}

// mountKernelFS mounts /proc, /sys and /dev; failing any of them is fatal.
func mountKernelFS() error {
	for _, m := range kernelMounts {
		if err := m.do(); err != nil {
			return err
		}
	}
	return nil
}

// mountRest mounts the rest, cgroups included; failures are reported and
// the boot goes on (gcs reports what it then lacks).
func mountRest(cgroupV1 bool) {
	for _, m := range otherMounts {
		if err := m.do(); err != nil {
			logf("%v", err)
		}
	}
	for _, l := range devLinks {
		if err := os.Symlink(l[0], l[1]); err != nil && !os.IsExist(err) {
			logf("symlink %s: %v", l[1], err)
		}
	}
	var err error
	if cgroupV1 {
		err = mountCgroupV1("/sys/fs/cgroup", "/proc/cgroups")
	} else {
		err = mountCgroupV2("/sys/fs/cgroup")
	}
	if err != nil {
		logf("cgroups: %v", err)
	}
}

// attachConsole points stdin, stdout and stderr at /dev/console if the
// kernel could not (an initrd without /dev/console).
func attachConsole() {
	if _, err := unix.FcntlInt(2, unix.F_GETFD, 0); err == nil {
		return
	}
	fd, err := unix.Open("/dev/console", unix.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return // nowhere to say so
	}
	for i := 0; i < 3; i++ {
		if fd != i {
			_ = unix.Dup3(fd, i, 0)
		}
	}
	if fd > 2 {
		unix.Close(fd)
	}
}
