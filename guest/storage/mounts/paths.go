package mounts

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
)

// DefaultRoots returns the directories guest storage paths live under when
// a configuration names none: layers, SCSI mounts and container bundles.
func DefaultRoots() []string { return []string{"/run/layers", "/run/mounts", "/run/gcs"} }

// Roots is a set of allowed directories for guest paths.
type Roots struct {
	dirs []string
}

// NewRoots returns the set of dirs (DefaultRoots() if empty). Each must be
// absolute and clean.
func NewRoots(dirs []string) (Roots, error) {
	if len(dirs) == 0 {
		dirs = DefaultRoots()
	}
	r := Roots{dirs: make([]string, 0, len(dirs))}
	for _, d := range dirs {
		if !filepath.IsAbs(d) || filepath.Clean(d) != d || d == "/" {
			return Roots{}, fmt.Errorf("allowed root %q: must be absolute, clean and not /: %w", d, errdefs.ErrInvalidArgument)
		}
		r.dirs = append(r.dirs, d)
	}
	return r, nil
}

// Dirs returns the allowed roots.
func (r Roots) Dirs() []string { return append([]string(nil), r.dirs...) }

// CheckLexical refuses p unless it is absolute, clean (no "..", ".", doubled
// or trailing slashes) and strictly beneath an allowed root as written.
func (r Roots) CheckLexical(p string) error {
	if p == "" || !filepath.IsAbs(p) {
		return fmt.Errorf("path %q: must be absolute: %w", p, errdefs.ErrInvalidArgument)
	}
	if filepath.Clean(p) != p {
		return fmt.Errorf("path %q: must be clean: %w", p, errdefs.ErrInvalidArgument)
	}
	if strings.ContainsRune(p, 0) {
		return fmt.Errorf("path %q: contains NUL: %w", p, errdefs.ErrInvalidArgument)
	}
	if r.rootOf(p, r.dirs) == "" {
		return fmt.Errorf("path %q: not beneath any of %v: %w", p, r.dirs, errdefs.ErrInvalidArgument)
	}
	return nil
}

// Check is CheckLexical plus the same test on p with every symbolic link
// in its existing part resolved, so a link inside a root cannot lead a
// mount or a layer outside it.
func (r Roots) Check(p string) error {
	if err := r.CheckLexical(p); err != nil {
		return err
	}
	real, err := resolve(p)
	if err != nil {
		return fmt.Errorf("path %q: %w", p, err)
	}
	resolved := make([]string, 0, len(r.dirs))
	for _, d := range r.dirs {
		rd, err := resolve(d)
		if err != nil {
			return fmt.Errorf("allowed root %q: %w", d, err)
		}
		resolved = append(resolved, rd)
	}
	if r.rootOf(real, resolved) == "" {
		return fmt.Errorf("path %q resolves to %q, outside the allowed roots: %w", p, real, errdefs.ErrInvalidArgument)
	}
	return nil
}

// CheckTarget is Check for a path something will be created or mounted
// at: its last element must not already be a symbolic link, which mount(2)
// would follow.
func (r Roots) CheckTarget(p string) error {
	if err := r.Check(p); err != nil {
		return err
	}
	if fi, err := os.Lstat(p); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("path %q: is a symbolic link: %w", p, errdefs.ErrInvalidArgument)
	}
	return nil
}

// rootOf returns the element of roots p is strictly beneath, or "".
func (Roots) rootOf(p string, roots []string) string {
	for _, d := range roots {
		if strings.HasPrefix(p, d+"/") {
			return d
		}
	}
	return ""
}

// resolve returns p with the symbolic links in its longest existing prefix
// resolved and the rest appended unchanged.
func resolve(p string) (string, error) {
	var rest []string
	cur := p
	for {
		real, err := filepath.EvalSymlinks(cur)
		if err == nil {
			for i := len(rest) - 1; i >= 0; i-- {
				real = filepath.Join(real, rest[i])
			}
			return real, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("resolve %q: %w", cur, err)
		}
		if _, lerr := os.Lstat(cur); lerr == nil {
			// cur exists but does not resolve: a dangling link, which
			// creating beneath it would follow to wherever it points.
			return "", fmt.Errorf("%q is a dangling symbolic link: %w", cur, errdefs.ErrInvalidArgument)
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return p, nil
		}
		rest = append(rest, filepath.Base(cur))
		cur = parent
	}
}
