package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
)

// layerMain writes an image (busybox by default, or a directory or a tar)
// as an ext4 layer disk in a fixed VHD: the form the HCS driver attaches,
// and what `run --driver hcs` mounts as the container's image. It runs on
// Linux, where host/layer has mke2fs.
func layerMain(args []string) (int, error) {
	fs := flag.NewFlagSet("layer", flag.ContinueOnError)
	image := fs.String("image", "", "a directory or a tar (default: busybox)")
	out := fs.String("o", "", "the VHD to write (NAME.vhd)")
	if err := fs.Parse(args); err != nil {
		return 2, usageError{err}
	}
	switch {
	case fs.NArg() > 0:
		return 2, usageError{fmt.Errorf("layer: unexpected arguments %q", fs.Args())}
	case *out == "" || !strings.HasSuffix(strings.ToLower(*out), ".vhd"):
		return 2, usageError{errors.New("layer: -o NAME.vhd is required (a fixed VHD: the ext4 image and a footer)")}
	case runtime.GOOS != "linux":
		return 1, errors.New("layer: ext4 images are made with mke2fs on Linux; copy the .vhd to this host")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	work, err := os.MkdirTemp(filepath.Dir(*out), ".host-bridge-layer-")
	if err != nil {
		return 1, err
	}
	defer os.RemoveAll(work)
	img := filepath.Join(work, "layer.img")
	if err := buildLayer(ctx, *image, work, img); err != nil {
		return 1, err
	}
	// Hyper-V refuses a sparse VHD, and mke2fs leaves holes: write every
	// byte.
	vhd := filepath.Join(work, "layer.vhd")
	if err := copyDense(img, vhd); err != nil {
		return 1, err
	}
	if err := appendVHDFooter(vhd); err != nil {
		return 1, err
	}
	if err := os.Rename(vhd, *out); err != nil {
		return 1, err
	}
	return 0, nil
}

// copyDense copies src to a new file dst, writing its holes as zeros.
func copyDense(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	// A plain reader: no copy_file_range, which may keep the holes.
	if _, err := io.Copy(out, struct{ io.Reader }{in}); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return out.Close()
}
