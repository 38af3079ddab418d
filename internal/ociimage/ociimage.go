// Package ociimage writes container images as OCI image-layout archives,
// the form `ctr images import` takes: layers are gzip tars built in memory,
// and BusyboxLayer is Debian's busybox-static with its applet links.
package ociimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/uvmgcs/gcs/host/layer"
)

// Entry is one file of a layer built in memory: a directory, a symlink
// (Link) or a regular file (Body).
type Entry struct {
	Name, Body, Link string
	Dir              bool
	Mode             int64 // 0644 if zero
}

// ociArchive is an OCI image layout in a tar, the way `ctr images import`
// takes it: blobs for each layer (gzip tar), the config and the manifest,
// an index naming the image.
type ociArchive struct {
	blobs map[string][]byte
}

func (a *ociArchive) add(b []byte) (digest string, size int) {
	h := sha256.Sum256(b)
	d := hex.EncodeToString(h[:])
	a.blobs[d] = b
	return "sha256:" + d, len(b)
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int               `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    map[string]string `json:"platform,omitempty"`
}

// Image is one image of an archive: its name, the "config" object of its
// OCI image config (Env, Cmd, Entrypoint, User, ...) and its layers (gzip
// tars, bottom first).
type Image struct {
	Name   string
	Config map[string]any
	Layers [][]byte
}

// DefaultConfig is busybox's: PATH set, `sh` as the command.
func DefaultConfig() map[string]any {
	return map[string]any{"Env": []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, "Cmd": []string{"sh"}}
}

// WriteArchive writes an OCI archive of an image named name whose layers
// are the given gzip tars (bottom first), for linux/amd64.
func WriteArchive(path, name string, layers [][]byte) error {
	return WriteImages(path, []Image{{Name: name, Config: DefaultConfig(), Layers: layers}})
}

// WriteImages writes one OCI archive holding imgs, for linux/amd64; blobs
// they share are stored once.
func WriteImages(path string, imgs []Image) error {
	a := &ociArchive{blobs: map[string][]byte{}}
	var manifests []descriptor
	for _, img := range imgs {
		md, err := a.addImage(img)
		if err != nil {
			return err
		}
		manifests = append(manifests, md)
	}
	idx, _ := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": manifests})
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	files := map[string][]byte{"oci-layout": []byte(`{"imageLayoutVersion":"1.0.0"}`), "index.json": idx}
	for d, b := range a.blobs {
		files["blobs/sha256/"+d] = b
	}
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Name: dir, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
	}
	for n, b := range files {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(b)), ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
		if _, err := tw.Write(b); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return f.Close()
}

// addImage stores img's layers, config and manifest and returns the
// index's descriptor of the manifest.
func (a *ociArchive) addImage(img Image) (descriptor, error) {
	var diffIDs []string
	var lds []descriptor
	for _, l := range img.Layers {
		zr, err := gzip.NewReader(bytes.NewReader(l))
		if err != nil {
			return descriptor{}, err
		}
		var raw bytes.Buffer
		if _, err := raw.ReadFrom(zr); err != nil {
			return descriptor{}, err
		}
		h := sha256.Sum256(raw.Bytes())
		diffIDs = append(diffIDs, "sha256:"+hex.EncodeToString(h[:]))
		d, n := a.add(l)
		lds = append(lds, descriptor{MediaType: "application/vnd.oci.image.layer.v1.tar+gzip", Digest: d, Size: n})
	}
	cfg, err := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux", "config": img.Config,
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs},
	})
	if err != nil {
		return descriptor{}, err
	}
	cd, cn := a.add(cfg)
	man, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": descriptor{MediaType: "application/vnd.oci.image.config.v1+json", Digest: cd, Size: cn},
		"layers": lds,
	})
	md, mn := a.add(man)
	return descriptor{
		MediaType: "application/vnd.oci.image.manifest.v1+json", Digest: md, Size: mn,
		Annotations: map[string]string{"io.containerd.image.name": img.Name, "org.opencontainers.image.ref.name": "latest"},
		Platform:    map[string]string{"architecture": "amd64", "os": "linux"},
	}, nil
}

// GzipTar makes a layer from entries.
func GzipTar(entries []Entry) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		h := &tar.Header{Name: e.Name, Mode: 0o644, ModTime: time.Unix(1, 0), Size: int64(len(e.Body))}
		if e.Mode != 0 {
			h.Mode = e.Mode
		}
		switch {
		case e.Dir:
			h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o755, 0
		case e.Link != "":
			h.Typeflag, h.Linkname, h.Mode, h.Size = tar.TypeSymlink, e.Link, 0o777, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if e.Body != "" {
			if _, err := tw.Write([]byte(e.Body)); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// BusyboxLayer is Debian's busybox-static (/bin/busybox) with its applet
// links and minimal /etc, as a layer; work holds the tree it is made from.
func BusyboxLayer(work string) ([]byte, error) {
	tree := filepath.Join(work, "busybox-tree")
	if err := layer.Busybox(context.Background(), "/bin/busybox", tree); err != nil {
		return nil, err
	}
	var entries []Entry
	err := filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == tree {
			return err
		}
		rel, _ := filepath.Rel(tree, p)
		switch {
		case d.IsDir():
			entries = append(entries, Entry{Name: rel + "/", Dir: true})
		case d.Type()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			entries = append(entries, Entry{Name: rel, Link: l})
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			entries = append(entries, Entry{Name: rel, Body: string(b), Mode: int64(info.Mode().Perm())})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return GzipTar(entries)
}
