// Command mkbusybox writes a busybox image (Debian's busybox-static) as an
// OCI archive for `ctr images import`: make busybox-image.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/uvmgcs/gcs/internal/ociimage"
)

func main() {
	out := flag.String("o", "busybox-oci.tar", "the archive to write")
	name := flag.String("name", "docker.io/uvmgcs/busybox:latest", "the image's name")
	flag.Parse()
	if err := run(*out, *name); err != nil {
		fmt.Fprintln(os.Stderr, "mkbusybox:", err)
		os.Exit(1)
	}
}

func run(out, name string) error {
	work, err := os.MkdirTemp(filepath.Dir(out), ".mkbusybox-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	l, err := ociimage.BusyboxLayer(work)
	if err != nil {
		return err
	}
	return ociimage.WriteArchive(out, name, [][]byte{l})
}
