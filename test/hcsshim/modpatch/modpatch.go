// Package modpatch prepares a patched copy of a Go module taken from the
// module proxy: it downloads the module (`go mod download -json`), copies it
// into a writable directory and applies a list of named adaptations, each
// of which says why it is needed. The conformance suites under test/hcsshim
// build hcsshim's real code on Linux this way; no copy of it is kept in the
// repository.
package modpatch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Adaptation is one change applied to the copy.
type Adaptation struct {
	// Name is a short label, shown in errors and listed in the suite's README.
	Name string
	// Why is the reason the change is needed.
	Why string
	// Apply changes the module copy rooted at root.
	Apply func(root string) error
}

// Module is a downloaded module as `go mod download -json` reports it.
type Module struct {
	Path    string
	Version string
	Dir     string
	Sum     string
	Error   string
}

// Download fetches path@version into the module cache through the module
// proxy and returns where its source is. The go command is $GO or "go".
func Download(ctx context.Context, path, version string) (*Module, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, goCommand(), "mod", "download", "-json", path+"@"+version)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// Outside any module, so no go.mod of the caller's is consulted.
	cmd.Dir = os.TempDir()
	runErr := cmd.Run()
	var m Module
	if err := json.Unmarshal(stdout.Bytes(), &m); err != nil {
		return nil, fmt.Errorf("go mod download %s@%s: %v: %s", path, version, runErr, strings.TrimSpace(stderr.String()))
	}
	if m.Error != "" || runErr != nil {
		return nil, fmt.Errorf("go mod download %s@%s: %v: %s %s", path, version, runErr, m.Error, strings.TrimSpace(stderr.String()))
	}
	if m.Dir == "" {
		return nil, fmt.Errorf("go mod download %s@%s: no source directory reported", path, version)
	}
	return &m, nil
}

// Prepare downloads path@version, copies it to dst (created; it must not
// exist or be empty) with every file writable, and applies adaptations in
// order. The first failing adaptation stops it with an error naming it.
func Prepare(ctx context.Context, path, version, dst string, adaptations ...Adaptation) (*Module, error) {
	m, err := Download(ctx, path, version)
	if err != nil {
		return nil, err
	}
	if err := CopyTree(m.Dir, dst); err != nil {
		return nil, fmt.Errorf("copy %s: %w", m.Dir, err)
	}
	if err := Apply(dst, adaptations...); err != nil {
		return nil, err
	}
	return m, nil
}

// Apply applies adaptations to the module copy at root, in order.
func Apply(root string, adaptations ...Adaptation) error {
	for _, a := range adaptations {
		if err := a.Apply(root); err != nil {
			return fmt.Errorf("adaptation [%s]: %w", a.Name, err)
		}
	}
	return nil
}

// CopyTree copies the regular files and directories under src to dst,
// writable by the owner (the module cache is read-only).
func CopyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			return copyFile(p, target, info.Mode().Perm()|0o200)
		default:
			return nil // module zips hold only files and directories
		}
	})
}

func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// DropBuildTag removes the constraint line "//go:build <expr>" from each of
// files (paths relative to the module root; globs allowed). Every file a
// pattern matches must start with exactly that line, so a new release that
// changes the constraint fails here rather than building something else.
func DropBuildTag(why, expr string, files ...string) Adaptation {
	return Adaptation{
		Name: fmt.Sprintf("drop //go:build %s from %s", expr, strings.Join(files, ", ")),
		Why:  why,
		Apply: func(root string) error {
			for _, pattern := range files {
				matches, err := filepath.Glob(filepath.Join(root, pattern))
				if err != nil {
					return err
				}
				if len(matches) == 0 {
					return fmt.Errorf("%s matches no file", pattern)
				}
				for _, f := range matches {
					if err := dropConstraint(f, expr); err != nil {
						return err
					}
				}
			}
			return nil
		},
	}
}

func dropConstraint(file, expr string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	line := "//go:build " + expr + "\n"
	if !bytes.HasPrefix(b, []byte(line)) {
		return fmt.Errorf("%s does not start with %q", file, strings.TrimSpace(line))
	}
	return os.WriteFile(file, b[len(line):], 0o644)
}

// Replace replaces old by new in file, which must hold old exactly n times
// (n > 0).
func Replace(why, file, old, new string, n int) Adaptation {
	return Adaptation{
		Name: fmt.Sprintf("in %s replace %q by %q", file, old, new),
		Why:  why,
		Apply: func(root string) error {
			p := filepath.Join(root, file)
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if got := bytes.Count(b, []byte(old)); got != n {
				return fmt.Errorf("%s holds %q %d times, want %d", file, old, got, n)
			}
			return os.WriteFile(p, bytes.ReplaceAll(b, []byte(old), []byte(new)), 0o644)
		},
	}
}

// AddFile writes data as file in the copy; the file must not exist (an
// adaptation adds, it never silently overwrites the module's own code).
func AddFile(why, file string, data []byte) Adaptation {
	return Adaptation{
		Name: "add " + file,
		Why:  why,
		Apply: func(root string) error {
			p := filepath.Join(root, file)
			if _, err := os.Stat(p); err == nil {
				return fmt.Errorf("%s exists in the module", file)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			return os.WriteFile(p, data, 0o644)
		},
	}
}

// IgnoredSource returns a Go source file kept in this repository for a
// module copy: such files start with "//go:build ignore" (so this module
// never builds them) and the line is dropped here.
func IgnoredSource(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	const tag = "//go:build ignore\n"
	if !bytes.HasPrefix(b, []byte(tag)) {
		return nil, fmt.Errorf("%s does not start with %q", path, strings.TrimSpace(tag))
	}
	return b[len(tag):], nil
}

func goCommand() string {
	if g := os.Getenv("GO"); g != "" {
		return g
	}
	return "go"
}
