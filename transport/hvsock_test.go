package transport

import (
	"testing"

	"github.com/Microsoft/go-winio/pkg/guid"
)

func TestHvsockServiceID(t *testing.T) {
	for _, tc := range []struct {
		port uint32
		want string
	}{
		{0, "00000000-facb-11e6-bd58-64006a7986d3"},
		{BridgePort, "40000000-facb-11e6-bd58-64006a7986d3"},
		{FirstStdioPort, "40000001-facb-11e6-bd58-64006a7986d3"},
		{0x12345678, "12345678-facb-11e6-bd58-64006a7986d3"},
		{0xFFFFFFFF, "ffffffff-facb-11e6-bd58-64006a7986d3"},
	} {
		got := HvsockServiceID(tc.port)
		if got.String() != tc.want {
			t.Errorf("HvsockServiceID(%#x) = %s, want %s", tc.port, got, tc.want)
		}
		// GUIDs compare case-insensitively: the upper-case form names the
		// same service.
		parsed, err := guid.FromString(upperHex(tc.want))
		if err != nil {
			t.Fatal(err)
		}
		if parsed != got {
			t.Errorf("HvsockServiceID(%#x) = %s, parsed %s", tc.port, got, parsed)
		}
	}
}

func upperHex(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'f' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}
