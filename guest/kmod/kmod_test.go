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

// On a kernel that has the modules built in, Load needs neither
// modules.dep nor /sys/module entries: modules.builtin says so.
func TestBuiltinIsNoOp(t *testing.T) {
	dir := t.TempDir()
	builtin := "kernel/fs/erofs/erofs.ko\nkernel/drivers/md/dm-verity.ko\nkernel/net/9p/9pnet_virtio.ko\n"
	os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte(builtin), 0o644)
	l := &Loader{dir: dir, sysMod: t.TempDir()}
	if err := l.Load("erofs", "dm_verity", "dm-verity", "9pnet_virtio"); err != nil {
		t.Fatalf("built-in modules: %v", err)
	}
	// A module neither built in nor in modules.dep is still an error.
	if err := l.Load("virtio_pmem"); err == nil {
		t.Fatal("a module the kernel lacks loaded without error")
	}
}
