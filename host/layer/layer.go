// Package layer owns turning a container image on the host into disks a
// utility VM can mount: a read-only ext4 layer from a directory or a tar,
// an empty ext4 scratch disk, and the default busybox image. It uses
// Debian's mke2fs (-d populates a file system without mounting anything).
package layer

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/uvmgcs/gcs/protocol"
)

// FromDir writes an ext4 image of dir to out, sized to fit with headroom.
func FromDir(ctx context.Context, dir, out string) error {
	size, err := treeSize(dir)
	if err != nil {
		return err
	}
	// Headroom for metadata (inodes, journal-less ext4, directories).
	mib := size/(1<<20)*5/4 + 8
	return mkfs(ctx, out, mib, "-d", dir, "-O", "^has_journal", "-E", "root_owner=0:0")
}

// FromTar unpacks a tar (any compression tar recognises) into a temporary
// directory and writes an ext4 image of it to out.
func FromTar(ctx context.Context, tarPath, out string) error {
	tmp, err := os.MkdirTemp(filepath.Dir(out), ".layer-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	cmd := exec.CommandContext(ctx, "tar", "-xf", tarPath, "-C", tmp, "--numeric-owner")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("unpack %s: %v: %s", tarPath, err, strings.TrimSpace(string(b)))
	}
	return FromDir(ctx, tmp, out)
}

// Scratch writes an empty ext4 image of sizeMiB to out (sparse: it takes
// space only as the container writes).
func Scratch(ctx context.Context, out string, sizeMiB int64) error {
	return mkfs(ctx, out, sizeMiB)
}

func mkfs(ctx context.Context, out string, mib int64, args ...string) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	err = f.Truncate(mib << 20)
	f.Close()
	if err != nil {
		return err
	}
	// 4 KiB blocks whatever the size: dm-verity and DAX want the page size.
	argv := append([]string{"-q", "-F", "-t", "ext4", "-b", "4096", "-E", "lazy_itable_init=1,lazy_journal_init=1"}, args...)
	argv = append(argv, out)
	cmd := exec.CommandContext(ctx, "mke2fs", argv...)
	cmd.Env = append(os.Environ(), "E2FSPROGS_FAKE_TIME=1")
	if b, err := cmd.CombinedOutput(); err != nil {
		os.Remove(out)
		return fmt.Errorf("mke2fs %s: %v: %s", out, err, strings.TrimSpace(string(b)))
	}
	return nil
}

func treeSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		n += 4096
		return nil
	})
	return n, err
}

// Busybox writes the default image's tree into dir: Debian's
// busybox-static with a link per applet, and minimal /etc files.
func Busybox(ctx context.Context, busybox, dir string) error {
	for _, d := range []string{"bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "root", "run", "usr/bin"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	data, err := os.ReadFile(busybox)
	if err != nil {
		return fmt.Errorf("default image needs %s (Debian busybox-static): %w", busybox, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "busybox"), data, 0o755); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, busybox, "--list").Output()
	if err != nil {
		return fmt.Errorf("%s --list: %w", busybox, err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", applet)); err != nil && !os.IsExist(err) {
			return err
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
		"etc/group":  "root:x:0:\nnogroup:x:65534:\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// AppendVerity appends a dm-verity hash tree to the ext4 image img (with
// Debian's veritysetup, cryptsetup-bin) and returns what the guest needs
// to check it.
func AppendVerity(ctx context.Context, img string) (*protocol.VerityInfo, error) {
	st, err := os.Stat(img)
	if err != nil {
		return nil, err
	}
	size := st.Size()
	out, err := exec.CommandContext(ctx, "veritysetup", "format", "--hash-offset="+strconv.FormatInt(size, 10), img, img).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("veritysetup format %s: %v: %s", img, err, strings.TrimSpace(string(out)))
	}
	v := &protocol.VerityInfo{Ext4SizeInBytes: size, Version: 1, SuperBlock: true}
	for _, line := range strings.Split(string(out), "\n") {
		k, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		switch strings.TrimSpace(k) {
		case "Hash algorithm":
			v.Algorithm = val
		case "Salt":
			v.Salt = val
		case "Root hash":
			v.RootDigest = val
		case "Data block size":
			v.BlockSize, _ = strconv.Atoi(val)
		}
	}
	if v.RootDigest == "" || v.BlockSize == 0 {
		return nil, fmt.Errorf("veritysetup format %s: no root hash in its output:\n%s", img, out)
	}
	return v, nil
}
