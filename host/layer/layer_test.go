package layer

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestBusyboxImage(t *testing.T) {
	if _, err := exec.LookPath("mke2fs"); err != nil {
		t.Skip("SKIP (loud): mke2fs (e2fsprogs) is not installed")
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("SKIP (loud): /bin/busybox (busybox-static) is not installed")
	}
	ctx := context.Background()
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	if err := Busybox(ctx, "/bin/busybox", tree); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "layer.img")
	if err := FromDir(ctx, tree, img); err != nil {
		t.Fatal(err)
	}
	// debugfs reads the image without mounting it.
	out, err := exec.Command("debugfs", "-R", "ls -l /bin", img).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "busybox") || !strings.Contains(string(out), "sh") {
		t.Fatalf("debugfs: %v\n%s", err, out)
	}
	scratch := filepath.Join(dir, "scratch.img")
	if err := Scratch(ctx, scratch, 64); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(scratch); st.Size() != 64<<20 {
		t.Fatalf("scratch size %d", st.Size())
	}
}

func TestAppendVerity(t *testing.T) {
	if _, err := exec.LookPath("veritysetup"); err != nil {
		t.Skip("SKIP (loud): veritysetup (cryptsetup-bin) is not installed")
	}
	if _, err := exec.LookPath("mke2fs"); err != nil {
		t.Skip("SKIP (loud): mke2fs (e2fsprogs) is not installed")
	}
	ctx := context.Background()
	img := filepath.Join(t.TempDir(), "v.img")
	if err := Scratch(ctx, img, 8); err != nil {
		t.Fatal(err)
	}
	v, err := AppendVerity(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	if v.Ext4SizeInBytes != 8<<20 || v.BlockSize != 4096 || len(v.RootDigest) != 64 || v.Algorithm != "sha256" {
		t.Fatalf("verity info %+v", v)
	}
	if st, _ := os.Stat(img); st.Size() <= 8<<20 {
		t.Fatal("no hash tree appended")
	}
}
