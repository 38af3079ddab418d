package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestParseVolume(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	os.WriteFile(file, nil, 0o644)
	for _, tc := range []struct {
		in   string
		want volume
		ok   bool
	}{
		{dir + ":/data", volume{dir, "/data", false}, true},
		{dir + ":/data/:ro", volume{dir, "/data", true}, true},
		{dir + ":/data:rw", volume{dir, "/data", false}, true},
		{dir + ":data", volume{}, false},
		{dir + ":/", volume{}, false},
		{dir + ":/data:rx", volume{}, false},
		{dir, volume{}, false},
		{":/data", volume{}, false},
		{file + ":/data", volume{}, false},
		{filepath.Join(dir, "missing") + ":/data", volume{}, false},
	} {
		got, err := parseVolume(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("parseVolume(%q) = %+v, %v", tc.in, got, err)
		}
	}
}
