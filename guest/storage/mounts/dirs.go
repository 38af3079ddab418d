package mounts

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// MakeDir creates dir and its missing parents and returns a function that
// removes the directories it created (if still empty), deepest first.
func MakeDir(dir string, perm fs.FileMode) (remove func(), err error) {
	var created []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil || d == filepath.Dir(d) {
			break
		}
		created = append(created, d)
	}
	if err := os.MkdirAll(dir, perm); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	return func() {
		for _, d := range created {
			if os.Remove(d) != nil {
				return
			}
		}
	}, nil
}

// Unmount unmounts target. A target that is not mounted (or does not
// exist) is already unmounted: that is success.
func Unmount(target string) error {
	for {
		err := unix.Unmount(target, 0)
		switch {
		case err == nil, errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			return nil
		case errors.Is(err, unix.EINTR):
			continue
		}
		return fmt.Errorf("unmount %s: %w", target, err)
	}
}
