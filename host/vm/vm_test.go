package vm

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigDefaults(t *testing.T) {
	c := Config{}.WithDefaults()
	if c.MemoryMiB != DefaultMemoryMiB || c.CPUs != DefaultCPUs {
		t.Errorf("defaults = %d MiB, %d CPUs", c.MemoryMiB, c.CPUs)
	}
	c = Config{MemoryMiB: 1024, CPUs: 2}.WithDefaults()
	if c.MemoryMiB != 1024 || c.CPUs != 2 {
		t.Errorf("set values changed: %d MiB, %d CPUs", c.MemoryMiB, c.CPUs)
	}
}

func TestConfigValidate(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	for _, tc := range []struct {
		name     string
		cfg      Config
		wantText string // "" for valid
		notExist bool
	}{
		{"valid", Config{Kernel: file, Initrd: file}, "", false},
		{"no kernel", Config{Initrd: file}, "Kernel is required", false},
		{"missing kernel", Config{Kernel: missing, Initrd: file}, missing, true},
		{"missing initrd", Config{Kernel: file, Initrd: missing}, "Initrd", true},
		{"kernel is a dir", Config{Kernel: dir, Initrd: file}, "not a regular file", false},
		{"negative memory", Config{Kernel: file, Initrd: file, MemoryMiB: -1}, "negative", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.wantText == "" {
				if err != nil {
					t.Errorf("Validate = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("Validate = %v, want it to mention %q", err, tc.wantText)
			}
			if tc.notExist != errors.Is(err, fs.ErrNotExist) {
				t.Errorf("errors.Is(%v, fs.ErrNotExist) = %v", err, !tc.notExist)
			}
		})
	}
}
