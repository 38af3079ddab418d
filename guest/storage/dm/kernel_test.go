package dm_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/containerd/errdefs"
	"github.com/uvmgcs/gcs/guest/storage/dm"
	"github.com/uvmgcs/gcs/guest/storage/dm/dmtest"
	"github.com/uvmgcs/gcs/guest/storage/mounts"
	"github.com/uvmgcs/gcs/guest/storage/scsi"
	"github.com/uvmgcs/gcs/guest/storage/storagetest"
)

// patterned writes an image of MiBs mebibytes, the i-th filled with
// letters[i], and attaches it read-only.
func patterned(t *testing.T, dir, letters string) string {
	t.Helper()
	img := filepath.Join(dir, "pattern.img")
	var b []byte
	for _, c := range []byte(letters) {
		b = append(b, bytes.Repeat([]byte{c}, 1<<20)...)
	}
	if err := os.WriteFile(img, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return "/dev/" + storagetest.AttachLoop(t, img, true)
}

func TestLinearOnLoop(t *testing.T) {
	ctx := context.Background()
	dir := storagetest.Dir(t)
	m := dmtest.Mapper(t)
	loop := patterned(t, dir, "AB")
	table, err := dm.Linear(loop, 1<<20, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	path, err := m.Create(ctx, "lin", table, true)
	if err != nil {
		t.Fatal(err)
	}
	if path != m.Path("lin") {
		t.Fatalf("node %s, want %s", path, m.Path("lin"))
	}
	b, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(b, bytes.Repeat([]byte("B"), 1<<20)) {
		t.Fatalf("read %d bytes through the slice (%v), want 1 MiB of B", len(b), err)
	}
	if w, err := os.OpenFile(path, os.O_WRONLY, 0); err == nil {
		_, err = w.Write([]byte("x"))
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			t.Fatal("wrote to a read-only device")
		}
	}

	// The kernel lists it, with the numbers its node has, and reports
	// the table back.
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	devs, err := m.List()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, d := range devs {
		if d.Name == m.FullName("lin") {
			found = unix.Mkdev(d.Major, d.Minor) == st.Rdev
		}
	}
	if !found {
		t.Fatalf("%s not listed with its node's numbers in %+v", m.FullName("lin"), devs)
	}
	live, err := m.Table("lin")
	if err != nil {
		t.Fatal(err)
	}
	if len(live) != 1 || live[0].Type != "linear" || live[0].Length != 2048 || !strings.HasSuffix(live[0].Params, " 2048") {
		t.Fatalf("live table %+v", live)
	}

	if _, err := m.Create(ctx, "lin", table, true); !errors.Is(err, unix.EBUSY) || !strings.Contains(err.Error(), "exists already") {
		t.Fatalf("creating it twice: %v", err)
	}

	// An open device is not removed; the retries give up.
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Remove(ctx, "lin"); !errors.Is(err, unix.EBUSY) {
		t.Fatalf("removing an open device: %v", err)
	}
	f.Close()
	if err := m.Remove(ctx, "lin"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("node left: %v", err)
	}
	if err := m.Remove(ctx, "lin"); err != nil {
		t.Fatalf("removing it again: %v", err)
	}
}

// TestCreateFailureLeavesNothing: a table the kernel refuses leaves no
// device and no node.
func TestCreateFailureLeavesNothing(t *testing.T) {
	storagetest.Dir(t)
	m := dmtest.Mapper(t)
	table := []dm.Target{{Length: 8, Type: "linear", Params: "/nonexistent/disk 0"}}
	if _, err := m.Create(context.Background(), "bad", table, true); err == nil {
		t.Fatal("a table over a missing disk loaded")
	} else if !strings.Contains(err.Error(), "load table") {
		t.Fatalf("error does not say which step failed: %v", err)
	}
	if left, err := m.Owned(); err != nil || len(left) != 0 {
		t.Fatalf("left %v %v", left, err)
	}
}

var files = map[string]string{"etc/os-release": "ID=verity\n"}

// mountAt returns a Use mounting its device read-only at target.
func mountAt(target string) dm.Use {
	return func(ctx context.Context, dev string) (mounts.Undo, error) {
		return scsi.MountDevice(ctx, dev, target, scsi.MountOptions{ReadOnly: true})
	}
}

func TestVerity(t *testing.T) {
	ctx := context.Background()
	dir := storagetest.Dir(t)
	m := dmtest.Mapper(t)
	img, info := dmtest.VerityImage(t, dir, "layer", files)
	loop := "/dev/" + storagetest.AttachLoop(t, img, true)
	target := filepath.Join(dir, "mnt")

	undo, err := m.StackVerity(ctx, "v", loop, info, mountAt(target))
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(target, "etc/os-release")); err != nil || string(b) != files["etc/os-release"] {
		t.Fatalf("read through dm-verity: %q %v", b, err)
	}
	if st, err := m.Status("v"); err != nil || len(st) != 1 || st[0].Type != "verity" || st[0].Params != "V" {
		t.Fatalf("status %+v %v, want verity V", st, err)
	}
	if err := undo(ctx); err != nil {
		t.Fatal(err)
	}
	if storagetest.IsMounted(t, target) {
		t.Fatal("still mounted")
	}
	if left, err := m.Owned(); err != nil || len(left) != 0 {
		t.Fatalf("left %v %v", left, err)
	}
}

func TestVerityRefusesBadDigest(t *testing.T) {
	ctx := context.Background()
	dir := storagetest.Dir(t)
	m := dmtest.Mapper(t)
	img, info := dmtest.VerityImage(t, dir, "layer", files)
	loop := "/dev/" + storagetest.AttachLoop(t, img, true)
	target := filepath.Join(dir, "mnt")

	bad := *info
	flip := "0"
	if bad.RootDigest[0] == '0' {
		flip = "1"
	}
	bad.RootDigest = flip + bad.RootDigest[1:]
	_, err := m.StackVerity(ctx, "v", loop, &bad, mountAt(target))
	if !errors.Is(err, dm.ErrVerity) || !errors.Is(err, unix.EIO) {
		t.Fatalf("wrong root digest: %v, want dm.ErrVerity wrapping EIO", err)
	}
	if !strings.Contains(err.Error(), "dm-verity: root digest mismatch or corrupt data") {
		t.Fatalf("error %q does not say why", err)
	}
	if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("mount point left: %v", err)
	}
	if left, err := m.Owned(); err != nil || len(left) != 0 {
		t.Fatalf("left %v %v", left, err)
	}

	// Too little device for the filesystem and its tree is bad input.
	big := *info
	big.Ext4SizeInBytes = 64 << 20
	if _, err := m.StackVerity(ctx, "v", loop, &big, mountAt(target)); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("filesystem larger than the device: %v", err)
	}
}

// TestVerityRefusesCorruptData: the right digest over changed data fails
// the same way.
func TestVerityRefusesCorruptData(t *testing.T) {
	ctx := context.Background()
	dir := storagetest.Dir(t)
	m := dmtest.Mapper(t)
	img, info := dmtest.VerityImage(t, dir, "layer", files)
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Byte 3000 is in the first block, past the ext4 superblock: the
	// filesystem would not notice, dm-verity does.
	if _, err := f.WriteAt([]byte{0x5a}, 3000); err != nil {
		t.Fatal(err)
	}
	f.Close()
	loop := "/dev/" + storagetest.AttachLoop(t, img, true)
	_, err = m.StackVerity(ctx, "v", loop, info, mountAt(filepath.Join(dir, "mnt")))
	if !errors.Is(err, dm.ErrVerity) {
		t.Fatalf("corrupt data: %v, want dm.ErrVerity", err)
	}
	if left, err := m.Owned(); err != nil || len(left) != 0 {
		t.Fatalf("left %v %v", left, err)
	}
}
