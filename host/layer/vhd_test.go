package layer

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func TestVHDFooter(t *testing.T) {
	const size = 256 << 20
	now := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	b, err := vhdFooter(size, now)
	if err != nil {
		t.Fatal(err)
	}
	be := binary.BigEndian
	if len(b) != 512 || string(b[:8]) != "conectix" {
		t.Fatalf("footer: %d bytes, cookie %q", len(b), b[:8])
	}
	for _, f := range []struct {
		name      string
		got, want uint64
	}{
		{"features", uint64(be.Uint32(b[8:])), 2},
		{"version", uint64(be.Uint32(b[12:])), 0x00010000},
		{"data offset", be.Uint64(b[16:]), ^uint64(0)},
		{"time stamp", uint64(be.Uint32(b[24:])), uint64(now.Sub(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)) / time.Second)},
		{"original size", be.Uint64(b[40:]), size},
		{"current size", be.Uint64(b[48:]), size},
		{"disk type", uint64(be.Uint32(b[60:])), 2},
		{"checksum", uint64(be.Uint32(b[64:])), uint64(vhdChecksum(b))},
	} {
		if f.got != f.want {
			t.Errorf("%s: %#x, want %#x", f.name, f.got, f.want)
		}
	}
	if bytes.Equal(b[68:84], make([]byte, 16)) {
		t.Error("unique id is zero")
	}
}

// TestVHDGeometry: the specification's algorithm at its branch points.
func TestVHDGeometry(t *testing.T) {
	for _, tc := range []struct {
		sectors uint64
		c       uint16
		h, s    uint8
	}{
		{16384, 240, 4, 17},               // 8 MiB: the 17-sector table
		{69632, 140, 16, 31},              // 4096 cylinders of 4 heads: too many, 31 sectors
		{524288, 520, 16, 63},             // 256 MiB: past the 31-sector table
		{65535*16*63 - 1, 65534, 16, 63},  // just below the 255-sector table
		{65535 * 16 * 63, 16191, 16, 255}, // the 255-sector table
		{1 << 40, 65535, 16, 255},         // capped
	} {
		c, h, s := vhdGeometry(tc.sectors)
		if c != tc.c || h != tc.h || s != tc.s {
			t.Errorf("%d sectors: CHS %d/%d/%d, want %d/%d/%d", tc.sectors, c, h, s, tc.c, tc.h, tc.s)
		}
	}
}

// TestBlankVHDReadByQEMU: qemu-img, an independent reader, takes a blank
// VHD for a fixed disk of the size asked for, with a valid checksum.
func TestBlankVHDReadByQEMU(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("SKIP (loud): no qemu-img")
	}
	dir := t.TempDir()
	for _, mib := range []int64{8, 256, 40000} {
		path := filepath.Join(dir, "blank"+strconv.FormatInt(mib, 10)+".vhd")
		if err := BlankVHD(path, mib); err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd := exec.Command("qemu-img", "info", "--output=json", "--image-opts",
			"driver=vpc,force_size_calc=current_size,file.filename="+path)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("qemu-img info: %v: %s", err, stderr.Bytes())
		}
		var info struct {
			Format      string `json:"format"`
			VirtualSize int64  `json:"virtual-size"`
		}
		if err := json.Unmarshal(out, &info); err != nil {
			t.Fatal(err)
		}
		if info.Format != "vpc" || info.VirtualSize != mib<<20 || stderr.Len() > 0 {
			t.Errorf("%d MiB: qemu-img reads %s of %d bytes (stderr %q)", mib, info.Format, info.VirtualSize, stderr.Bytes())
		}
		if got := footerOf(t, path); vhdChecksum(got) != binary.BigEndian.Uint32(got[64:]) {
			t.Errorf("%d MiB: bad checksum", mib)
		}
		if err := BlankVHD(path, mib); err == nil {
			t.Errorf("blankVHD overwrote %s", path)
		}
	}
}

func footerOf(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 512)
	if _, err := f.ReadAt(b, st.Size()-512); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return b
}
