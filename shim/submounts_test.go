package shim

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestWithSubmounts(t *testing.T) {
	src, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	host := []hostMount{{path: "/"}, {path: src + "/tmpfs/deeper"}, {path: src + "/tmpfs"}, {path: src + "/ro", readOnly: true},
		{path: src + "x/beside"}}
	vol := func(opts ...string) specs.Mount {
		return specs.Mount{Destination: "/mnt", Type: "bind", Source: src, Options: opts}
	}
	sub := func(dst, src string, opts ...string) specs.Mount {
		return specs.Mount{Destination: dst, Type: "bind", Source: src, Options: append([]string{"rbind"}, opts...)}
	}
	for name, tc := range map[string]struct {
		in   specs.Mount
		want []specs.Mount
	}{
		// A read-only volume keeps the mounts below it writable unless
		// they are read-only themselves; parents before children.
		"ro": {vol("rbind", "rprivate", "ro"), []specs.Mount{vol("rbind", "rprivate", "ro"),
			sub("/mnt/tmpfs", src+"/tmpfs"), sub("/mnt/ro", src+"/ro", "ro"), sub("/mnt/tmpfs/deeper", src+"/tmpfs/deeper")}},
		"rro": {vol("rbind", "rro", "ro"), []specs.Mount{vol("rbind", "rro", "ro"),
			sub("/mnt/tmpfs", src+"/tmpfs", "ro"), sub("/mnt/ro", src+"/ro", "ro"), sub("/mnt/tmpfs/deeper", src+"/tmpfs/deeper", "ro")}},
		// A plain bind takes no mounts below its source.
		"bind":  {vol("bind", "ro"), []specs.Mount{vol("bind", "ro")}},
		"tmpfs": {specs.Mount{Destination: "/t", Type: "tmpfs", Source: "tmpfs"}, []specs.Mount{{Destination: "/t", Type: "tmpfs", Source: "tmpfs"}}},
	} {
		got, err := withSubmounts([]specs.Mount{tc.in}, host)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %v\n got %+v\nwant %+v", name, err, got, tc.want)
		}
	}
	var many []hostMount
	for i := 0; i <= maxSubmounts; i++ {
		many = append(many, hostMount{path: fmt.Sprintf("%s/m%d", src, i)})
	}
	if _, err := withSubmounts([]specs.Mount{vol("rbind")}, many); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("%d mounts below a volume: %v", len(many), err)
	}
	if ms, err := readHostMounts(); err != nil || len(ms) == 0 || ms[0].path == "" {
		t.Errorf("host mounts: %v %+v", err, ms)
	}
}
