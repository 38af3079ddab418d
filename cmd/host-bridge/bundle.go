package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// loadSpec reads bundle/config.json. A relative root.path is made absolute
// against the bundle directory: the agent resolves relative paths against
// its own bundle directory, and in host mode it shares this filesystem.
func loadSpec(bundle string) (*specs.Spec, error) {
	dir, err := filepath.Abs(bundle)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", bundle, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		return nil, fmt.Errorf("bundle %s: config.json: %w", dir, err)
	}
	if spec.Process == nil || len(spec.Process.Args) == 0 {
		return nil, fmt.Errorf("bundle %s: config.json has no process.args: %w", dir, errBadSpec)
	}
	if spec.Root == nil || spec.Root.Path == "" {
		return nil, fmt.Errorf("bundle %s: config.json has no root.path: %w", dir, errBadSpec)
	}
	if !filepath.IsAbs(spec.Root.Path) {
		spec.Root.Path = filepath.Join(dir, spec.Root.Path)
	}
	return &spec, nil
}

// errBadSpec is a config.json the agent could not run.
var errBadSpec = errors.New("invalid OCI spec")
