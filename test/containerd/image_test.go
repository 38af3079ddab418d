package containerd

import (
	"fmt"
	"path/filepath"

	"github.com/uvmgcs/gcs/internal/ociimage"
)

// Images the tests import.
const (
	busyboxImage = "docker.io/uvmgcs/busybox:latest"
	layeredImage = "docker.io/uvmgcs/layered:latest"
)

// buildImages writes the busybox archive and the three-layer one (busybox;
// files; a whiteout and an opaque directory over them) into dir.
func buildImages(dir string) (busybox, layered string, err error) {
	bb, err := ociimage.BusyboxLayer(dir)
	if err != nil {
		return "", "", err
	}
	l2, err := ociimage.GzipTar([]ociimage.Entry{
		{Name: "etc/", Dir: true}, {Name: "etc/layer2", Body: "from layer 2\n"},
		{Name: "etc/gone", Body: "deleted in layer 3\n"},
		{Name: "opq/", Dir: true}, {Name: "opq/hidden", Body: "hidden by layer 3\n"},
	})
	if err != nil {
		return "", "", err
	}
	l3, err := ociimage.GzipTar([]ociimage.Entry{
		{Name: "etc/", Dir: true}, {Name: "etc/.wh.gone"}, {Name: "etc/layer3", Body: "from layer 3\n"},
		{Name: "opq/", Dir: true}, {Name: "opq/.wh..wh..opq"}, {Name: "opq/kept", Body: "kept\n"},
	})
	if err != nil {
		return "", "", err
	}
	busybox, layered = filepath.Join(dir, "busybox.tar"), filepath.Join(dir, "layered.tar")
	if err := ociimage.WriteArchive(busybox, busyboxImage, [][]byte{bb}); err != nil {
		return "", "", fmt.Errorf("busybox image: %w", err)
	}
	if err := ociimage.WriteArchive(layered, layeredImage, [][]byte{bb, l2, l3}); err != nil {
		return "", "", fmt.Errorf("layered image: %w", err)
	}
	return busybox, layered, nil
}
