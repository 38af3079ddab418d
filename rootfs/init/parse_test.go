package main

import (
	"reflect"
	"testing"
)

func TestEnabledV1Controllers(t *testing.T) {
	in := "#subsys_name\thierarchy\tnum_cgroups\tenabled\n" +
		"cpuset\t0\t1\t1\ncpu\t0\t1\t1\nmemory\t0\t1\t0\nbroken line\npids\t0\t1\t1\n"
	want := []string{"cpuset", "cpu", "pids"}
	if got := enabledV1Controllers(in); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestParseModuleList(t *testing.T) {
	in := "kernel/crypto/crc32c_generic.ko\n\n# a comment\n  kernel/fs/ext4/ext4.ko  # trailing\n"
	want := []string{"kernel/crypto/crc32c_generic.ko", "kernel/fs/ext4/ext4.ko"}
	if got := parseModuleList(in); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestStatPPID(t *testing.T) {
	for _, tc := range []struct {
		stat string
		ppid int
		ok   bool
	}{
		{"42 (gcs) S 1 42 42 0 -1", 1, true},
		{"7 (kworker/0:1) I 2 0 0 0 -1", 2, true},
		{"9 (a) b) (c) R 5 9 9", 5, true},
		{"garbage", 0, false},
		{"1 (x)", 0, false},
	} {
		ppid, ok := statPPID(tc.stat)
		if ppid != tc.ppid || ok != tc.ok {
			t.Errorf("statPPID(%q) = %d, %v; want %d, %v", tc.stat, ppid, ok, tc.ppid, tc.ok)
		}
	}
}
