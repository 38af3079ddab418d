package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/opencontainers/runc/libcontainer/exeseal"
	"golang.org/x/sys/unix"
)

// sealSelf starts the agent again from a sealed memfd copy of its binary,
// unless it already runs from one.
//
// A container must never be able to overwrite the binary its init runs
// from (CVE-2019-5736: a process in the container opens /proc/<init>/exe
// for writing while "gcs init" sets it up). libcontainer guarantees that
// for every process it starts: when /proc/self/exe is not a sealed memfd
// it mounts a private read-only overlayfs over the binary for each start
// and exec (0.15-0.3 ms each here). A memfd sealed against writes, growth
// and shrinking (F_SEAL_WRITE|F_SEAL_GROW|F_SEAL_SHRINK|F_SEAL_SEAL, which
// exeseal.IsCloned checks and libcontainer's own IsSelfExeCloned accepts)
// is the same guarantee, made once: the kernel refuses every write to it,
// from any process, for its whole life. It costs one copy of the binary
// in memory (about 8 MiB) for the agent's life. In the utility VM the
// init has already started the agent from such a memfd (and removed the
// initramfs file), so this finds it sealed and makes no second copy.
func sealSelf() error {
	if exeseal.IsSelfExeCloned() {
		return nil
	}
	self, err := os.Open("/proc/self/exe")
	if err != nil {
		return err
	}
	defer self.Close()
	st, err := self.Stat()
	if err != nil {
		return err
	}
	clone, seal, err := exeseal.Memfd("gcs")
	if err != nil {
		return err
	}
	defer clone.Close()
	if n, err := io.Copy(clone, self); err != nil {
		return err
	} else if n != st.Size() {
		return fmt.Errorf("copied %d of %d bytes", n, st.Size())
	}
	if err := seal(&clone); err != nil {
		return err
	}
	if !exeseal.IsCloned(clone) {
		return errors.New("the copy is not sealed")
	}
	// The memfd is close-on-exec: the kernel opens it by this path before
	// it closes it, and the new image keeps it as its executable.
	return unix.Exec("/proc/self/fd/"+strconv.Itoa(int(clone.Fd())), os.Args, os.Environ())
}
