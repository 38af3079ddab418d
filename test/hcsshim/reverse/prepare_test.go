package reverse

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// The hcsshim release under test.
const (
	hcsshimModule  = "github.com/Microsoft/hcsshim"
	hcsshimVersion = "v0.15.0"
)

// adaptation is one change made to the downloaded module's copy; README.md
// lists each with its reason.
type adaptation struct {
	name  string
	apply func(root string) error
}

// adaptations make hcsshim's cmd/gcs build here and talk over the unix
// transport. Each fails loudly when the module no longer matches.
var adaptations = []adaptation{
	{"unix transport (internal/guest/transport/unix_uvmgcs.go)", addStandin("standin/unix.go", "internal/guest/transport/unix_uvmgcs.go")},
	{"cmd/gcs chooses its transport", replaceOnce("cmd/gcs/main.go", "tport := &transport.VsockTransport{}", "tport := transport.ChooseTransport()")},
	{"cosesign1go stand-in", cosesign1Standin},
}

// buildHcsshimGCS downloads hcsshim through the module proxy, copies it
// into work, applies the adaptations and builds cmd/gcs for Linux; it
// returns the binary's path.
func buildHcsshimGCS(ctx context.Context, work string) (string, error) {
	dir, err := download(ctx, hcsshimModule, hcsshimVersion)
	if err != nil {
		return "", err
	}
	root := filepath.Join(work, "hcsshim")
	if err := os.CopyFS(root, os.DirFS(dir)); err != nil {
		return "", fmt.Errorf("copy %s: %w", dir, err)
	}
	for _, a := range adaptations {
		if err := a.apply(root); err != nil {
			return "", fmt.Errorf("adaptation %q: %w", a.name, err)
		}
	}
	bin := filepath.Join(work, "hcsshim-gcs")
	cmd := exec.CommandContext(ctx, goCmd(), "build", "-trimpath", "-o", bin, "./cmd/gcs")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=", "GOOS=linux")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build hcsshim's cmd/gcs: %v\n%s", err, out)
	}
	return bin, nil
}

// download puts path@version in the module cache and returns its source
// directory.
func download(ctx context.Context, path, version string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, goCmd(), "mod", "download", "-json", path+"@"+version)
	cmd.Dir = os.TempDir() // outside any module
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var m struct{ Dir, Error string }
	if err := json.Unmarshal(stdout.Bytes(), &m); err != nil || runErr != nil || m.Error != "" || m.Dir == "" {
		return "", fmt.Errorf("go mod download %s@%s: %v %s %s", path, version, runErr, m.Error, strings.TrimSpace(stderr.String()))
	}
	return m.Dir, nil
}

func goCmd() string {
	if g := os.Getenv("GO"); g != "" {
		return g
	}
	return "go"
}

// standin is a source file kept here for the module copy: it starts with
// "//go:build ignore" (this module never builds it); the line is dropped.
func standin(name string) ([]byte, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	const tag = "//go:build ignore\n"
	if !bytes.HasPrefix(b, []byte(tag)) {
		return nil, fmt.Errorf("%s does not start with %q", name, strings.TrimSpace(tag))
	}
	return b[len(tag):], nil
}

// addStandin adds stand-in src as file dst of the copy, which must not
// exist in the module.
func addStandin(src, dst string) func(string) error {
	return func(root string) error {
		b, err := standin(src)
		if err != nil {
			return err
		}
		return addFile(root, dst, b)
	}
}

func addFile(root, name string, b []byte) error {
	p := filepath.Join(root, name)
	if _, err := os.Stat(p); err == nil {
		return fmt.Errorf("%s exists in the module", name)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, b, 0o644)
}

// replaceOnce replaces old, which file must hold exactly once, by new.
func replaceOnce(file, old, new string) func(string) error {
	return func(root string) error {
		p := filepath.Join(root, file)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if n := bytes.Count(b, []byte(old)); n != 1 {
			return fmt.Errorf("%s holds %q %d times, want once", file, old, n)
		}
		return os.WriteFile(p, bytes.Replace(b, []byte(old), []byte(new), 1), 0o644)
	}
}

// cosesign1Standin replaces github.com/Microsoft/cosesign1go, which the
// module proxy does not serve, by a local module whose calls all fail.
func cosesign1Standin(root string) error {
	const mod = "github.com/Microsoft/cosesign1go"
	b, err := standin("standin/cosesign1.go")
	if err != nil {
		return err
	}
	if err := addFile(root, "uvmgcs-standin/cosesign1go/go.mod", []byte("module "+mod+"\n\ngo 1.21\n")); err != nil {
		return err
	}
	if err := addFile(root, "uvmgcs-standin/cosesign1go/pkg/cosesign1/cosesign1.go", b); err != nil {
		return err
	}
	cmd := exec.Command(goCmd(), "mod", "edit", "-replace", mod+"=./uvmgcs-standin/cosesign1go")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go mod edit: %v: %s", err, out)
	}
	return nil
}
