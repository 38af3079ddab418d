package modpatch

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, root, name, data string, perm os.FileMode) {
	t.Helper()
	p := filepath.Join(root, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), perm); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, root, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCopyTreeIsWritable(t *testing.T) {
	src, dst := t.TempDir(), filepath.Join(t.TempDir(), "copy")
	write(t, src, "a/b.go", "package b\n", 0o444)
	if err := CopyTree(src, dst); err != nil {
		t.Fatal(err)
	}
	if got := read(t, dst, "a/b.go"); got != "package b\n" {
		t.Fatalf("copied %q", got)
	}
	if err := os.WriteFile(filepath.Join(dst, "a/b.go"), []byte("x"), 0o644); err != nil {
		t.Fatalf("copy is not writable: %v", err)
	}
}

func TestAdaptations(t *testing.T) {
	root := t.TempDir()
	write(t, root, "p/a.go", "//go:build windows\n\npackage p\n\nimport \"x/windows\"\n", 0o644)
	write(t, root, "p/b.go", "//go:build windows\n\npackage p\n", 0o644)
	write(t, root, "p/c.go", "//go:build linux\n\npackage p\n", 0o644)

	err := Apply(root,
		DropBuildTag("why", "windows", "p/[ab].go"),
		Replace("why", "p/a.go", `"x/windows"`, `"y/windows"`, 1),
		AddFile("why", "p/z.go", []byte("package p\n")))
	if err != nil {
		t.Fatal(err)
	}
	if got := read(t, root, "p/a.go"); got != "\npackage p\n\nimport \"y/windows\"\n" {
		t.Fatalf("a.go: %q", got)
	}
	if got := read(t, root, "p/z.go"); got != "package p\n" {
		t.Fatalf("z.go: %q", got)
	}

	for name, a := range map[string]Adaptation{
		"another constraint":  DropBuildTag("why", "windows", "p/c.go"),
		"no match":            DropBuildTag("why", "windows", "q/*.go"),
		"count differs":       Replace("why", "p/a.go", "package", "pkg", 2),
		"overwrites a file":   AddFile("why", "p/c.go", nil),
		"constraint now gone": DropBuildTag("why", "windows", "p/b.go"),
	} {
		err := Apply(root, a)
		if err == nil || !strings.Contains(err.Error(), a.Name) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestIgnoredSource(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "ok.go", "//go:build ignore\n\npackage x\n", 0o644)
	write(t, dir, "bad.go", "package x\n", 0o644)
	if b, err := IgnoredSource(filepath.Join(dir, "ok.go")); err != nil || string(b) != "\npackage x\n" {
		t.Fatalf("%q %v", b, err)
	}
	if _, err := IgnoredSource(filepath.Join(dir, "bad.go")); err == nil {
		t.Fatal("a file without the ignore line was taken")
	}
}
