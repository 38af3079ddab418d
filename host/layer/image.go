package layer

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// DefaultBusybox is the static busybox the default image is made of
// (Debian's busybox-static).
const DefaultBusybox = "/bin/busybox"

// FromImage writes image's ext4 layer to out: image is a directory or a
// tar; empty means busybox.
func FromImage(ctx context.Context, image, out string) error {
	if image == "" {
		work, err := os.MkdirTemp(filepath.Dir(out), ".busybox-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(work)
		if err := Busybox(ctx, DefaultBusybox, work); err != nil {
			return err
		}
		return FromDir(ctx, work, out)
	}
	st, err := os.Stat(image)
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	if st.IsDir() {
		return FromDir(ctx, image, out)
	}
	return FromTar(ctx, image, out)
}

// ToVHD writes the raw image img as a fixed VHD at out (a new file): every
// byte of it, since Hyper-V refuses a sparse VHD and mke2fs leaves holes,
// then the footer.
func ToVHD(img, out string) error {
	in, err := os.Open(img)
	if err != nil {
		return err
	}
	defer in.Close()
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	// A plain reader: no copy_file_range, which may keep the holes.
	if _, err := io.Copy(f, struct{ io.Reader }{in}); err != nil {
		f.Close()
		os.Remove(out)
		return fmt.Errorf("copy %s: %w", img, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := AppendVHDFooter(out); err != nil {
		os.Remove(out)
		return err
	}
	return nil
}
