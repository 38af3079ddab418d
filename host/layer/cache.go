package layer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Cache keeps layer disks by the content of the image they were made
// from, so an image packed once is attached from the same file by every
// container that runs it (and the UVM shares one attachment).
type Cache struct {
	Dir string
}

// Layer returns the cached layer disk of image (a directory or a tar),
// writing it first when the cache has none for that content.
func (c Cache) Layer(ctx context.Context, image string) (string, error) {
	sum, err := Digest(image)
	if err != nil {
		return "", err
	}
	out := filepath.Join(c.Dir, sum+".img")
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(c.Dir, ".layer-")
	if err != nil {
		return "", err
	}
	tmp.Close()
	os.Remove(tmp.Name()) // mke2fs makes the file
	if err := FromImage(ctx, image, tmp.Name()); err != nil {
		os.Remove(tmp.Name())
		return "", err
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		os.Remove(tmp.Name())
		return "", err
	}
	return out, nil
}

// Digest is the sha256 of an image's content: of a tar's bytes, or of a
// directory tree's names, modes, owners, link targets and file contents
// in lexical order.
func Digest(image string) (string, error) {
	st, err := os.Stat(image)
	if err != nil {
		return "", fmt.Errorf("image: %w", err)
	}
	h := sha256.New()
	if !st.IsDir() {
		f, err := os.Open(image)
		if err != nil {
			return "", err
		}
		defer f.Close()
		if _, err := io.Copy(h, f); err != nil {
			return "", fmt.Errorf("image %s: %w", image, err)
		}
		return "tar-" + hex.EncodeToString(h.Sum(nil)), nil
	}
	err = filepath.WalkDir(image, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return digestEntry(h, image, p, d)
	})
	if err != nil {
		return "", fmt.Errorf("image %s: %w", image, err)
	}
	return "dir-" + hex.EncodeToString(h.Sum(nil)), nil
}

func digestEntry(h hash.Hash, root, p string, d fs.DirEntry) error {
	info, err := d.Info()
	if err != nil {
		return err
	}
	rel, _ := filepath.Rel(root, p)
	uid, gid := owner(info)
	fmt.Fprintf(h, "%q %o %d %d %d\n", rel, info.Mode(), uid, gid, info.Size())
	switch {
	case info.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(p)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "-> %q\n", target)
	case info.Mode().IsRegular():
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := io.Copy(h, f); err != nil {
			return err
		}
	}
	return nil
}
