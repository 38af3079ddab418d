package share

import (
	"errors"
	"testing"

	"github.com/uvmgcs/gcs/protocol"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		d    protocol.MappedDirectory
		want error
	}{
		{protocol.MappedDirectory{ShareName: "data", MountPath: "/run/mounts/d"}, nil},
		{protocol.MappedDirectory{Port: 0x40000005, MountPath: "/run/mounts/d"}, protocol.HrNotImpl},
		{protocol.MappedDirectory{ShareName: "", MountPath: "/run/mounts/d"}, protocol.HrInvalidArg},
		{protocol.MappedDirectory{ShareName: "a,trans=fd", MountPath: "/run/mounts/d"}, protocol.HrInvalidArg},
	} {
		err := check(&tc.d)
		if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("check(%+v) = %v, want %v", tc.d, err, tc.want)
		}
	}
}
