package host

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestParseSignalMatchesLinux: the host-independent table names every
// signal as this Linux host does.
func TestParseSignalMatchesLinux(t *testing.T) {
	for n := unix.Signal(1); n < 32; n++ {
		name := unix.SignalName(n)
		if name == "" {
			continue
		}
		for _, s := range []string{name, strings.TrimPrefix(name, "SIG"), strings.ToLower(name), "9"} {
			got, err := ParseSignal(s)
			want := int(n)
			if s == "9" {
				want = 9
			}
			if err != nil || got != want {
				t.Errorf("ParseSignal(%q) = %d, %v; want %d", s, got, err, want)
			}
		}
	}
	for _, bad := range []string{"0", "65", "NOPE", "SIG"} {
		if _, err := ParseSignal(bad); err == nil {
			t.Errorf("ParseSignal(%q) succeeded", bad)
		}
	}
}
