package names

import (
	"regexp"
	"strings"
	"testing"
)

// The regular expressions these checks replaced: every case must agree.
var (
	domainLabel   = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$`)
	hostnameLabel = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
	guidPattern   = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
)

func TestLabelAgreesWithRegexp(t *testing.T) {
	cases := []string{"", "a", "-", "_", "a-", "-a", "a-b", "a_b", "_a", "a_", "A9", "a.b", "a b", "é", "a\n",
		strings.Repeat("a", 63), strings.Repeat("a", 64), "a" + strings.Repeat("-", 61) + "a", "a" + strings.Repeat("-", 62) + "a"}
	for _, s := range cases {
		if got, want := Label(s, true), domainLabel.MatchString(s); got != want {
			t.Errorf("Label(%q, true) = %v, regexp says %v", s, got, want)
		}
		if got, want := Label(s, false), hostnameLabel.MatchString(s); got != want {
			t.Errorf("Label(%q, false) = %v, regexp says %v", s, got, want)
		}
	}
}

func TestNames(t *testing.T) {
	for _, tc := range []struct {
		s                string
		hostname, domain bool
	}{
		{"ctr", true, true},
		{"my-host.example.com", true, true},
		{"_srv.example.com", false, true},
		{"a..b", false, false},
		{".a", false, false},
		{"", false, false},
		{strings.Repeat("a", 65), false, false},
		{strings.Repeat("a.", 32) + "a", false, true}, // 65 characters: too long for a host name
	} {
		if got := Hostname(tc.s); got != tc.hostname {
			t.Errorf("Hostname(%q) = %v", tc.s, got)
		}
		if got := Domain(tc.s); got != tc.domain {
			t.Errorf("Domain(%q) = %v", tc.s, got)
		}
	}
}

func TestGUIDAgreesWithRegexp(t *testing.T) {
	for _, s := range []string{"", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0",
		"0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f00", "0f1e2d3c4b5a-6978-8796-a5b4c3d2e1f0-",
		"0f1e2d3c-4b5a-6978-8796_a5b4c3d2e1f0", "gf1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "{0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f}"} {
		if got, want := GUID(s), guidPattern.MatchString(s); got != want {
			t.Errorf("GUID(%q) = %v, regexp says %v", s, got, want)
		}
	}
}
