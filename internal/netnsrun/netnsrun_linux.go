package netnsrun

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ErrNotNetNS says a path does not (or no longer) name a network namespace.
var ErrNotNetNS = errors.New("not a network namespace")

// Open opens the network namespace at path; a path that is gone or no
// longer a namespace (its bind mount undone) is ErrNotNetNS.
func Open(path string) (netns.NsHandle, error) {
	ns, err := netns.GetFromPath(path)
	if errors.Is(err, os.ErrNotExist) {
		return ns, fmt.Errorf("network namespace %s: %w", path, ErrNotNetNS)
	}
	if err != nil {
		return ns, fmt.Errorf("open network namespace %s: %w", path, err)
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(ns), &st); err != nil || st.Type != unix.NSFS_MAGIC {
		ns.Close()
		return -1, fmt.Errorf("network namespace %s: %w", path, ErrNotNetNS)
	}
	return ns, nil
}

// Run runs fn on an OS thread that has joined the network namespace at
// path and returns its error. A thread that cannot return to its own
// namespace is never reused: its goroutine ends locked to it, and the
// runtime ends the thread.
func Run(path string, fn func() error) error {
	target, err := Open(path)
	if err != nil {
		return err
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("open this thread's network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter network namespace %s: %w", path, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("leave network namespace %s: %w", path, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
