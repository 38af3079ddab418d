package kmod

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestClosureOrder(t *testing.T) {
	dir := t.TempDir()
	dep := "kernel/fs/erofs/erofs.ko: kernel/lib/libcrc32c.ko kernel/crypto/crc32c_generic.ko\n" +
		"kernel/lib/libcrc32c.ko: kernel/crypto/crc32c_generic.ko\n" +
		"kernel/drivers/md/dm-verity.ko: kernel/drivers/md/dm-bufio.ko kernel/drivers/md/dm-mod.ko\n"
	os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(dep), 0o644)
	l := &Loader{dir: dir, sysMod: t.TempDir()}
	got, err := l.closure("erofs")
	want := []string{"kernel/crypto/crc32c_generic.ko", "kernel/lib/libcrc32c.ko", "kernel/fs/erofs/erofs.ko"}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("closure(erofs) = %v, %v", got, err)
	}
	if got, _ := l.closure("dm_verity"); got[len(got)-1] != "kernel/drivers/md/dm-verity.ko" || got[0] != "kernel/drivers/md/dm-mod.ko" {
		t.Fatalf("closure(dm_verity) = %v", got)
	}
	if _, err := l.closure("nope"); err == nil {
		t.Fatal("unknown module accepted")
	}
	// Loaded modules are not loaded again.
	os.MkdirAll(filepath.Join(l.sysMod, "erofs"), 0o755)
	if err := l.Load("erofs"); err != nil {
		t.Fatalf("loaded module: %v", err)
	}
}
