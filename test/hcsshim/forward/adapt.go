// Package forward runs the forward conformance suite: hcsshim's real
// host-side bridge, built on Linux from a patched copy of the module, drives
// the uvmgcs agent. Adaptations lists what is changed in that copy and why;
// the suite's sources (gcs/*.go) and Linux stand-ins (standin/*.go) are
// kept here with a "//go:build ignore" line this module never builds.
package forward

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"github.com/uvmgcs/gcs/test/hcsshim/modpatch"
)

// Module and Version are the hcsshim release the suite runs.
const (
	Module  = "github.com/Microsoft/hcsshim"
	Version = "v0.15.0"
)

// Adaptations is every change made to the hcsshim copy; dir is this
// package's directory (it holds gcs/ and standin/).
func Adaptations(dir string) ([]modpatch.Adaptation, error) {
	src := func(name string) ([]byte, error) { return modpatch.IgnoredSource(filepath.Join(dir, name)) }
	var out []modpatch.Adaptation
	add := func(a ...modpatch.Adaptation) { out = append(out, a...) }

	add(modpatch.DropBuildTag("the host-side bridge, its protocol types, the process and container interfaces, "+
		"schema1 and internal/cmd are plain Go that only carry the tag; the suite builds them on Linux",
		"windows",
		"internal/gcs/bridge.go", "internal/gcs/container.go", "internal/gcs/guestcaps.go",
		"internal/gcs/guestconnection.go", "internal/gcs/iochannel.go", "internal/gcs/process.go",
		"internal/gcs/prot/protocol.go", "internal/cow/cow.go", "internal/hcs/schema1/schema1.go",
		"internal/cmd/cmd.go", "internal/cmd/diag.go", "internal/cmd/io.go"))

	for _, s := range []struct{ from, to, why string }{
		{"standin/windows.go", "internal/uvmgcs/windows/windows.go",
			"golang.org/x/sys/windows has no Linux files; bridge.go uses Errno and WSAECONNABORTED, cmd.go EscapeArg"},
		{"standin/winio.go", "internal/uvmgcs/winio/winio.go",
			"go-winio's hvsocket code is Windows-only; process.go uses VsockServiceID, guestconnection.go's default " +
				"HvsockIoListen (never called: IoListen is a unix listener here) HvsockAddr and ListenHvsock"},
		{"standin/jobobject.go", "internal/jobobject/zz_uvmgcs_standin.go",
			"internal/jobobject is Windows-only; cow.go and container.go name only the GroupAffinity type"},
		{"standin/cmdio.go", "internal/cmd/zz_uvmgcs_standin.go",
			"io.go and diag.go name the named-pipe and binary-logger stdio constructors, which stay Windows-only and are never called"},
	} {
		b, err := src(s.from)
		if err != nil {
			return nil, err
		}
		add(modpatch.AddFile(s.why, s.to, b))
	}
	const winImport = `"golang.org/x/sys/windows"`
	const winStandin = `"github.com/Microsoft/hcsshim/internal/uvmgcs/windows"`
	add(modpatch.Replace("use the x/sys/windows stand-in", "internal/gcs/bridge.go", winImport, winStandin, 1),
		modpatch.Replace("use the x/sys/windows stand-in", "internal/cmd/cmd.go", winImport, winStandin, 1))
	const winioImport = "\"github.com/Microsoft/go-winio\"\n"
	const winioStandin = "winio \"github.com/Microsoft/hcsshim/internal/uvmgcs/winio\"\n"
	add(modpatch.Replace("use the go-winio stand-in", "internal/gcs/guestconnection.go", winioImport, winioStandin, 1),
		modpatch.Replace("use the go-winio stand-in", "internal/gcs/process.go", winioImport, winioStandin, 1))

	add(liftLinuxHostedSystem())

	tests, err := filepath.Glob(filepath.Join(dir, "gcs", "*_test.go"))
	if err != nil {
		return nil, err
	}
	if len(tests) == 0 {
		return nil, fmt.Errorf("no suite sources in %s/gcs", dir)
	}
	for _, f := range tests {
		b, err := modpatch.IgnoredSource(f)
		if err != nil {
			return nil, err
		}
		add(modpatch.AddFile("the suite itself, in package gcs so it reaches the bridge's frames and errors",
			"internal/gcs/zz_uvmgcs_"+filepath.Base(f), b))
	}
	return out, nil
}

// liftLinuxHostedSystem copies hcsshim's own LCOW container document type
// (internal/hcsoci.linuxHostedSystem, in a Windows-only package of
// Windows-only dependencies) into the suite, byte for byte from the module.
func liftLinuxHostedSystem() modpatch.Adaptation {
	const from = "internal/hcsoci/hcsdoc_lcow.go"
	return modpatch.Adaptation{
		Name: "copy type linuxHostedSystem from " + from + " into the suite",
		Why:  "containers are created with hcsshim's own document; its package cannot build on Linux",
		Apply: func(root string) error {
			b, err := os.ReadFile(filepath.Join(root, from))
			if err != nil {
				return err
			}
			start := bytes.Index(b, []byte("type linuxHostedSystem struct {"))
			if start < 0 {
				return fmt.Errorf("%s declares no linuxHostedSystem", from)
			}
			end := bytes.Index(b[start:], []byte("\n}\n"))
			if end < 0 {
				return fmt.Errorf("%s: linuxHostedSystem does not end", from)
			}
			decl := b[start : start+end+3]
			file := "// Code copied from " + from + " by the uvmgcs forward suite.\n\npackage gcs_test\n\n" +
				"import (\n\thcsschema \"github.com/Microsoft/hcsshim/internal/hcs/schema2\"\n\t\"github.com/opencontainers/runtime-spec/specs-go\"\n)\n\n" +
				string(decl)
			return modpatch.AddFile("", "internal/gcs/zz_uvmgcs_lhs_test.go", []byte(file)).Apply(root)
		},
	}
}
