package shim

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestParseRootfs(t *testing.T) {
	upper := t.TempDir()
	r, err := parseRootfs([]*types.Mount{{Type: "overlay", Source: "overlay", Options: []string{
		"index=off", "workdir=/s/3/work", "upperdir=" + upper, "lowerdir=/s/2/fs:/s/1/fs"}}}, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r.dirs, []string{"/s/2/fs", "/s/1/fs"}) || r.upper != "" {
		t.Fatalf("overlay: %+v (an empty upperdir is no layer)", r)
	}
	if err := os.WriteFile(filepath.Join(upper, "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err = parseRootfs([]*types.Mount{{Type: "overlay", Options: []string{"upperdir=" + upper, "lowerdir=/s/1/fs"}}}, "", nil)
	if err != nil || r.upper != upper {
		t.Fatalf("overlay with a written upperdir: %+v %v", r, err)
	}
	r, err = parseRootfs([]*types.Mount{{Type: "bind", Source: "/s/1/fs", Options: []string{"ro", "rbind"}}}, "", nil)
	if err != nil || !reflect.DeepEqual(r.dirs, []string{"/s/1/fs"}) {
		t.Fatalf("read-only bind: %+v %v", r, err)
	}
	r, err = parseRootfs([]*types.Mount{{Type: "bind", Source: "/x", Options: []string{"rbind", "rw"}}}, "", nil)
	if err != nil || r.shareDir != "/x" || r.shareRO {
		t.Fatalf("writable bind: %+v %v, want a read-write share", r, err)
	}
	bundle := t.TempDir()
	if err := os.Mkdir(filepath.Join(bundle, "rootfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	r, err = parseRootfs(nil, bundle, &specs.Root{Path: "rootfs", Readonly: true})
	if err != nil || r.shareDir != filepath.Join(bundle, "rootfs") || !r.shareRO {
		t.Fatalf("--rootfs: %+v %v, want a read-only share of the bundle's rootfs", r, err)
	}
	if _, err := parseRootfs(nil, bundle, &specs.Root{Path: "missing"}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("--rootfs of a missing directory: %v, want InvalidArgument", err)
	}
	for name, m := range map[string][]*types.Mount{
		"two mounts": {{Type: "bind"}, {Type: "bind"}},
		"ext4":       {{Type: "ext4", Source: "/dev/sda"}},
	} {
		if _, err := parseRootfs(m, "", nil); !errdefs.IsNotImplemented(err) {
			t.Errorf("%s: %v, want NotImplemented", name, err)
		}
	}
	if _, err := parseRootfs([]*types.Mount{{Type: "overlay", Options: []string{"upperdir=/u"}}}, "", nil); !errdefs.IsInvalidArgument(err) {
		t.Errorf("overlay without lowerdir: %v, want InvalidArgument", err)
	}
}

func TestGuestSpec(t *testing.T) {
	s := &specs.Spec{
		Root:   &specs.Root{Path: "rootfs", Readonly: true},
		Hooks:  &specs.Hooks{Prestart: []specs.Hook{{Path: "/bin/true"}}},
		Mounts: []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}},
		Linux:  &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}}},
	}
	g, binds, err := guestSpec(s, "/run/gcs/c/x/rootfs", podTask{})
	if err != nil {
		t.Fatal(err)
	}
	if g.Root.Path != "/run/gcs/c/x/rootfs" || !g.Root.Readonly || g.Hooks != nil || len(g.Mounts) != 1 || len(binds) != 0 || s.Root.Path != "rootfs" {
		t.Fatalf("guest spec %+v (host spec %+v)", g, s)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "hosts")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	bind := *s
	bind.Mounts = append([]specs.Mount{}, s.Mounts...)
	bind.Mounts = append(bind.Mounts,
		specs.Mount{Destination: "/h", Type: "bind", Source: dir, Options: []string{"rbind", "ro"}},
		specs.Mount{Destination: "/etc/hosts", Type: "bind", Source: file, Options: []string{"rbind", "rw"}})
	_, binds, err = guestSpec(&bind, "/r", podTask{})
	want := []hostBind{{index: 1, dir: dir, readOnly: true}, {index: 2, dir: dir, file: "hosts"}}
	if err != nil || !reflect.DeepEqual(binds, want) {
		t.Errorf("host bind mounts: %+v %v, want %+v", binds, err, want)
	}
	bind.Mounts = append(bind.Mounts, specs.Mount{Destination: "/m", Type: "bind", Source: filepath.Join(dir, "missing"), Options: []string{"rbind"}})
	if _, _, err := guestSpec(&bind, "/r", podTask{}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("bind mount of a missing path: %v, want InvalidArgument", err)
	}
	ns := *s
	ns.Linux = &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: "/proc/1/ns/net"}}}
	if _, _, err := guestSpec(&ns, "/r", podTask{}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("host namespace path: %v, want InvalidArgument", err)
	}
}

// TestParseErofsSnapshot reads the erofs snapshotter's block-mode mounts
// as containerd 2.4 passes them.
func TestParseErofsSnapshot(t *testing.T) {
	r, err := parseRootfs([]*types.Mount{
		{Type: "mkfs/ext4", Source: "/s/9/rwlayer.img", Options: []string{"X-containerd.mkfs.fs=ext4", "X-containerd.mkfs.size=67108864", "rw", "loop"}},
		{Type: "erofs", Source: "/s/2/layer.erofs", Options: []string{"ro", "loop"}},
		{Type: "erofs", Source: "/s/1/layer.erofs", Options: []string{"ro", "loop"}},
		{Type: "format/mkdir/overlay", Source: "overlay", Options: []string{
			"X-containerd.mkdir.path={{ mount 0 }}/upper:0755", "X-containerd.mkdir.path={{ mount 0 }}/work:0755",
			"workdir={{ mount 0 }}/work", "upperdir={{ mount 0 }}/upper", "lowerdir={{ overlay 1 2 }}"}},
	}, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r.images, []string{"/s/2/layer.erofs", "/s/1/layer.erofs"}) || r.scratch != "/s/9/rwlayer.img" || r.scratchSize != 64<<20 || len(r.dirs) != 0 {
		t.Fatalf("%+v", r)
	}
	r, err = parseRootfs([]*types.Mount{{Type: "erofs", Source: "/s/1/layer.erofs", Options: []string{"ro"}}}, "", nil)
	if err != nil || len(r.images) != 1 || r.scratch != "" {
		t.Fatalf("one layer: %+v %v", r, err)
	}
	if _, err := parseRootfs([]*types.Mount{{Type: "erofs", Source: "/m", Options: []string{"ro", "device=/s/1/layer.erofs"}}}, "", nil); !errdefs.IsNotImplemented(err) {
		t.Errorf("fsmerge: %v, want NotImplemented", err)
	}
	if _, err := parseRootfs([]*types.Mount{{Type: "erofs", Source: "/l"}, {Type: "mkfs/ext4", Source: "/rw", Options: []string{"X-containerd.mkfs.size=1"}}}, "", nil); !errdefs.IsInvalidArgument(err) {
		t.Errorf("mkfs/ext4 not first: %v, want InvalidArgument", err)
	}
}
