package reverse

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/uvmgcs/gcs/protocol"
)

// TestHostBridgeExec runs host-bridge's attached exec against hcsshim's
// guest, in the utility VM and in a container the library created on an
// earlier connection: its attach must drain and close the output streams,
// as hcsshim's guest answers a container process's wait only after that.
func TestHostBridgeExec(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "host-bridge")
	if out, err := exec.Command(goCmd(), "build", "-o", bin, "github.com/uvmgcs/gcs/cmd/host-bridge").CombinedOutput(); err != nil {
		t.Fatalf("build host-bridge: %v\n%s", err, out)
	}
	g := startGuest(t)
	gc := g.connect(t)
	c := createContainer(t, gc, busyboxLayer(t), "sleep", "1000")
	if _, err := c.CreateProcess(timeout(t), &protocol.ProcessParameters{}); err != nil {
		t.Fatal(err)
	}
	// hcsshim's guest keeps its containers across connections; host-bridge
	// takes the guest's next one.
	gc.Close()
	g.listener.Close()
	for _, tc := range []struct {
		name, stdin, stdout string
		args                []string
		code                int
	}{
		{"vm", "", "out\n", []string{"--", "sh", "-c", "echo out; echo err >&2; exit 3"}, 3},
		{"container", "", "out\n", []string{"--container", c.ID(), "--", "sh", "-c", "echo out; echo err >&2; exit 3"}, 3},
		{"container-stdin", "piped\n", "piped\n", []string{"--container", c.ID(), "-i", "--", "cat"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, append([]string{"exec", "--socket-dir", g.dir}, tc.args...)...)
			var out, errOut bytes.Buffer
			cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(tc.stdin), &out, &errOut
			err := cmd.Run()
			if ctx.Err() != nil {
				t.Fatalf("host-bridge exec hung (stdout %q, stderr %q)", out.String(), errOut.String())
			}
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code || out.String() != tc.stdout || (tc.code == 3 && !strings.Contains(errOut.String(), "err\n")) {
				t.Fatalf("exit %d stdout %q stderr %q; want %d %q", code, out.String(), errOut.String(), tc.code, tc.stdout)
			}
		})
	}
}
