package ociimage

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWriteArchive: every blob is stored under its digest, and the index
// names the image and points at its manifest, which points at the layers.
func TestWriteArchive(t *testing.T) {
	l, err := GzipTar([]Entry{{Name: "d/", Dir: true}, {Name: "d/f", Body: "x"}, {Name: "l", Link: "d/f"}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "img.tar")
	if err := WriteArchive(path, "example.com/i:latest", [][]byte{l, l}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		files[h.Name] = b
	}
	for name, b := range files {
		if d, ok := strings.CutPrefix(name, "blobs/sha256/"); ok && d != "" {
			h := sha256.Sum256(b)
			if hex.EncodeToString(h[:]) != d {
				t.Errorf("blob %s holds content of another digest", d)
			}
		}
	}
	var idx struct {
		Manifests []descriptor `json:"manifests"`
	}
	if err := json.Unmarshal(files["index.json"], &idx); err != nil || len(idx.Manifests) != 1 {
		t.Fatalf("index.json: %s %v", files["index.json"], err)
	}
	m := idx.Manifests[0]
	if m.Annotations["io.containerd.image.name"] != "example.com/i:latest" {
		t.Fatalf("index names %v", m.Annotations)
	}
	var man struct {
		Layers []descriptor `json:"layers"`
	}
	if err := json.Unmarshal(files["blobs/sha256/"+m.Digest[len("sha256:"):]], &man); err != nil || len(man.Layers) != 2 {
		t.Fatalf("manifest: %v %+v", err, man)
	}
}
