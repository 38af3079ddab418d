package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"github.com/uvmgcs/gcs/host/layer"
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
	if err := layer.FromImage(ctx, *image, img); err != nil {
		return 1, err
	}
	vhd := filepath.Join(work, "layer.vhd")
	if err := layer.ToVHD(img, vhd); err != nil {
		return 1, err
	}
	if err := os.Rename(vhd, *out); err != nil {
		return 1, err
	}
	return 0, nil
}
