package cri

import "github.com/uvmgcs/gcs/internal/ociimage"

const pathEnv = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// pauseScript is the sandbox's process: it exits on TERM or INT as
// Kubernetes' pause does and otherwise waits on a child that never ends
// (reaped by sh). The child is no sleep: a pod shares its pid namespace
// by default, and critest's execSync timeout spec counts every `sleep`
// its containers see.
const pauseScript = `trap 'exit 0' TERM INT; while :; do tail -f /dev/null & wait; done`

// pauseImage is the image name the CRI plugin runs as each sandbox.
const pauseImage = "registry.k8s.io/pause:3.6"

// busyboxImage is the walk's workload image.
const busyboxImage = "docker.io/library/busybox:uvmgcs"

// testImages are the walk's images: the pause image and busybox, each
// busybox with a marker file of its own so their content differs.
func testImages(work string) ([]ociimage.Image, error) {
	bb, err := ociimage.BusyboxLayer(work)
	if err != nil {
		return nil, err
	}
	mk := func(name string, cfg map[string]any) (ociimage.Image, error) {
		marker, err := ociimage.GzipTar([]ociimage.Entry{{Name: "etc/uvmgcs-image", Body: name + "\n"}})
		cfg["Env"] = []string{pathEnv}
		return ociimage.Image{Name: name, Config: cfg, Layers: [][]byte{bb, marker}}, err
	}
	pause, err := mk(pauseImage, map[string]any{"Entrypoint": []string{"/bin/sh", "-c", pauseScript}})
	if err != nil {
		return nil, err
	}
	busybox, err := mk(busyboxImage, map[string]any{"Cmd": []string{"sh"}})
	if err != nil {
		return nil, err
	}
	return []ociimage.Image{pause, busybox}, nil
}
