package reverse

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/uvmgcs/gcs/test/hcsshim/forward"
	"github.com/uvmgcs/gcs/test/hcsshim/modpatch"
)

// The hcsshim release under test: the forward suite's, so both directions
// run against the same code.
const (
	hcsshimModule  = forward.Module
	hcsshimVersion = forward.Version
)

// cosesign1go is imported by hcsshim's pkg/securitypolicy; the module proxy
// does not serve it.
const cosesign1go = "github.com/Microsoft/cosesign1go"

// adaptations make hcsshim's cmd/gcs build here and talk over the unix
// transport; README.md lists them. Each fails loudly when the module no
// longer matches.
func adaptations() ([]modpatch.Adaptation, error) {
	unix, err := modpatch.IgnoredSource("standin/unix.go")
	if err != nil {
		return nil, err
	}
	cose, err := modpatch.IgnoredSource("standin/cosesign1.go")
	if err != nil {
		return nil, err
	}
	const whyCose = "the module proxy does not serve " + cosesign1go + "; only confidential containers' COSE Sign1 " +
		"policy fragments use it, never reached with the open-door policy; every call of the stand-in fails"
	return []modpatch.Adaptation{
		modpatch.AddFile("hcsshim's guest dials vsock only and this host has none: a transport with our host library's unix-socket layout",
			"internal/guest/transport/unix_uvmgcs.go", unix),
		modpatch.Replace("cmd/gcs takes the unix transport when UVMGCS_UNIX_TRANSPORT_DIR is set",
			"cmd/gcs/main.go", "tport := &transport.VsockTransport{}", "tport := transport.ChooseTransport()", 1),
		modpatch.AddFile(whyCose, "uvmgcs-standin/cosesign1go/go.mod", []byte("module "+cosesign1go+"\n\ngo 1.21\n")),
		modpatch.AddFile(whyCose, "uvmgcs-standin/cosesign1go/pkg/cosesign1/cosesign1.go", cose),
		{
			Name: "replace " + cosesign1go + " by the stand-in",
			Why:  whyCose,
			Apply: func(root string) error {
				return goIn(context.Background(), root, "mod", "edit", "-replace", cosesign1go+"=./uvmgcs-standin/cosesign1go")
			},
		},
	}, nil
}

// buildHcsshimGCS downloads hcsshim through the module proxy, prepares a
// patched copy in work and builds its cmd/gcs for Linux; it returns the
// binary's path.
func buildHcsshimGCS(ctx context.Context, work string) (string, error) {
	as, err := adaptations()
	if err != nil {
		return "", err
	}
	root := filepath.Join(work, "hcsshim")
	if _, err := modpatch.Prepare(ctx, hcsshimModule, hcsshimVersion, root, as...); err != nil {
		return "", err
	}
	bin := filepath.Join(work, "hcsshim-gcs")
	// -trimpath: the copy's temporary path would otherwise defeat the
	// build cache for every hcsshim package.
	if err := goIn(ctx, root, "build", "-trimpath", "-o", bin, "./cmd/gcs"); err != nil {
		return "", fmt.Errorf("build hcsshim's cmd/gcs: %w", err)
	}
	return bin, nil
}

// goIn runs the go command in the module copy at dir.
func goIn(ctx context.Context, dir string, args ...string) error {
	cmd := exec.CommandContext(ctx, goCmd(), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=", "GOOS=linux")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %v: %v\n%s", args, err, out)
	}
	return nil
}

func goCmd() string {
	if g := os.Getenv("GO"); g != "" {
		return g
	}
	return "go"
}
