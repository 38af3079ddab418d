// Package layers turns container image layers that a snapshotter keeps as
// host directories into read-only erofs disk images a utility VM mounts,
// and caches them: a layer shared by images or containers is converted once.
// mkfs.erofs (erofs-utils) keeps overlayfs whiteouts (0:0 character devices)
// and opaque-directory xattrs, so the guest's overlayfs reads the layers as
// the host's would.
package layers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

// Tool is the converter looked up on PATH.
const Tool = "mkfs.erofs"

// Cache holds erofs images of snapshot directories under one directory.
type Cache struct {
	dir string

	mu    sync.Mutex
	locks map[string]*sync.Mutex // one conversion per key at a time
}

// NewCache returns a cache in dir, created on first use.
func NewCache(dir string) *Cache {
	return &Cache{dir: dir, locks: make(map[string]*sync.Mutex)}
}

// Dir is the cache's directory.
func (c *Cache) Dir() string { return c.dir }

// key names src by its path and identity (device, inode, change time): a
// snapshot directory whose content changes, or a new one at the same path,
// gets a new key.
func key(src string) (string, error) {
	st, err := os.Stat(src)
	if err != nil {
		return "", err
	}
	if !st.IsDir() {
		return "", fmt.Errorf("layer %s is not a directory", src)
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return "", fmt.Errorf("layer %s: no inode information", src)
	}
	h := sha256.Sum256([]byte(fmt.Sprintf("%s\x00%d\x00%d\x00%d.%d", filepath.Clean(src), sys.Dev, sys.Ino, sys.Ctim.Sec, sys.Ctim.Nsec)))
	return hex.EncodeToString(h[:16]), nil
}

// Disk returns the erofs image of the directory src, converting it on the
// first request. hit says whether it was cached already.
func (c *Cache) Disk(ctx context.Context, src string) (path string, hit bool, err error) {
	k, err := key(src)
	if err != nil {
		return "", false, err
	}
	out := filepath.Join(c.dir, k+".erofs")
	c.mu.Lock()
	l, ok := c.locks[k]
	if !ok {
		l = new(sync.Mutex)
		c.locks[k] = l
	}
	c.mu.Unlock()
	l.Lock()
	defer l.Unlock()
	if _, err := os.Stat(out); err == nil {
		return out, true, nil
	}
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return "", false, err
	}
	// Another shim may convert the same layer at once: each writes its own
	// file and renames it into place.
	tmp, err := os.CreateTemp(c.dir, ".tmp-"+k+"-")
	if err != nil {
		return "", false, err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	if err := Convert(ctx, src, tmp.Name()); err != nil {
		return "", false, err
	}
	if err := os.WriteFile(filepath.Join(c.dir, k+".src"), []byte(src), 0o600); err != nil {
		return "", false, err
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return "", false, err
	}
	return out, false, nil
}

// Prune removes the images whose snapshot directory is gone or changed.
func (c *Cache) Prune() (removed int, err error) {
	srcs, err := filepath.Glob(filepath.Join(c.dir, "*.src"))
	if err != nil {
		return 0, err
	}
	for _, s := range srcs {
		b, err := os.ReadFile(s)
		if err != nil {
			continue
		}
		k := strings.TrimSuffix(filepath.Base(s), ".src")
		if cur, err := key(string(b)); err == nil && cur == k {
			continue
		}
		os.Remove(filepath.Join(c.dir, k+".erofs"))
		os.Remove(s)
		removed++
	}
	return removed, nil
}

// Convert writes an erofs image of the directory src to out.
func Convert(ctx context.Context, src, out string) error {
	cmd := exec.CommandContext(ctx, Tool, "--quiet", "--preserve-mtime", out, src)
	if b, err := cmd.CombinedOutput(); err != nil {
		os.Remove(out)
		if _, lerr := exec.LookPath(Tool); lerr != nil {
			return fmt.Errorf("layer %s: %w (install erofs-utils)", src, lerr)
		}
		return fmt.Errorf("%s %s: %v: %s", Tool, src, err, strings.TrimSpace(string(b)))
	}
	return nil
}

// Empty reports whether the directory dir has no entries (a container's
// upper directory that nothing was written to).
func Empty(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if len(names) > 0 {
		return false, nil
	}
	if err != nil && err != io.EOF {
		return false, err
	}
	return true, nil
}
