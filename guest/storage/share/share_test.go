package share

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/uvmgcs/gcs/protocol"
)

type noDial struct{}

func (noDial) Dial(context.Context, uint32) (net.Conn, error) { return nil, errors.New("no") }

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		d      protocol.MappedDirectory
		dialer bool
		want   error
	}{
		{protocol.MappedDirectory{ShareName: "data", MountPath: "/run/mounts/d"}, false, nil},
		{protocol.MappedDirectory{Port: 564, ShareName: "0", MountPath: "/run/mounts/d"}, true, nil},
		{protocol.MappedDirectory{Port: 564, MountPath: "/run/mounts/d"}, true, nil},
		{protocol.MappedDirectory{Port: 564, ShareName: "0", MountPath: "/run/mounts/d"}, false, errdefs.ErrNotImplemented},
		{protocol.MappedDirectory{Port: 564, ShareName: "a,trans=virtio", MountPath: "/run/mounts/d"}, true, errdefs.ErrInvalidArgument},
		{protocol.MappedDirectory{Port: 564, ShareName: strings.Repeat("a", 256), MountPath: "/run/mounts/d"}, true, errdefs.ErrInvalidArgument},
		{protocol.MappedDirectory{ShareName: "", MountPath: "/run/mounts/d"}, false, errdefs.ErrInvalidArgument},
		{protocol.MappedDirectory{ShareName: "a,trans=fd", MountPath: "/run/mounts/d"}, false, errdefs.ErrInvalidArgument},
	} {
		s := &Shares{}
		if tc.dialer {
			s.dialer = noDial{}
		}
		err := s.check(&tc.d)
		if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("check(%+v) = %v, want %v", tc.d, err, tc.want)
		}
	}
}

func TestOptions(t *testing.T) {
	// What hcsshim's guest passes, plus the version and cache mode named.
	got := options(7, "0")
	want := "trans=fd,rfdno=7,wfdno=7,version=9p2000.L,msize=524288,cache=none,aname=0"
	if got != want {
		t.Errorf("options = %q, want %q", got, want)
	}
	if got := options(7, ""); strings.Contains(got, "aname") {
		t.Errorf("no share name, yet %q", got)
	}
}

func TestKeysTellSharesApart(t *testing.T) {
	a := key(&protocol.MappedDirectory{Port: 564, ShareName: "0"})
	b := key(&protocol.MappedDirectory{Port: 564, ShareName: "1"})
	c := key(&protocol.MappedDirectory{Port: 564, ShareName: "0", ReadOnly: true})
	v := key(&protocol.MappedDirectory{ShareName: "0"})
	if a == b || a == c || a == v {
		t.Errorf("keys collide: %q %q %q %q", a, b, c, v)
	}
}
