package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/uvmgcs/gcs/host/uvm"
)

func TestParseVolume(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	os.WriteFile(file, nil, 0o644)
	for _, tc := range []struct {
		in   string
		want uvm.Mount
		ok   bool
	}{
		{dir + ":/data", uvm.Mount{Source: dir, Destination: "/data", ReadOnly: false}, true},
		{dir + ":/data/:ro", uvm.Mount{Source: dir, Destination: "/data", ReadOnly: true}, true},
		{dir + ":/data:rw", uvm.Mount{Source: dir, Destination: "/data", ReadOnly: false}, true},
		{dir + ":data", uvm.Mount{}, false},
		{dir + ":/", uvm.Mount{}, false},
		{dir + ":/data:rx", uvm.Mount{}, false},
		{dir, uvm.Mount{}, false},
		{":/data", uvm.Mount{}, false},
		{file + ":/data", uvm.Mount{}, false},
		{filepath.Join(dir, "missing") + ":/data", uvm.Mount{}, false},
	} {
		got, err := parseVolume(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("parseVolume(%q) = %+v, %v", tc.in, got, err)
		}
	}
}
