package test

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uvmgcs/gcs/host"
	"github.com/uvmgcs/gcs/host/hostmode"
)

// gcsBinary is the agent under test: $GCS_BINARY, or one built for this run.
var gcsBinary string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "########################################################")
		fmt.Fprintln(os.Stderr, "## SKIPPING test/: host-mode agent tests need root    ##")
		fmt.Fprintln(os.Stderr, "## (a private mount namespace per agent).             ##")
		fmt.Fprintln(os.Stderr, "########################################################")
		return m.Run() // each test skips itself loudly
	}
	gcsBinary = os.Getenv("GCS_BINARY")
	if gcsBinary == "" {
		dir, err := os.MkdirTemp("", "gcs-test-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		gcsBinary = filepath.Join(dir, "gcs")
		build := exec.Command("go", "build", "-o", gcsBinary, "github.com/uvmgcs/gcs/cmd/gcs")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build gcs:", err)
			return 1
		}
	}
	// Processes the agents leave when they are killed are reparented to
	// this test binary, not to an init that may never reap them; collect
	// them when the run ends.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "become child subreaper:", err)
		return 1
	}
	code := m.Run()
	reapAll()
	return code
}

// reapAll collects every exited child; the tests are over, so no status
// can be stolen from a waiter.
func reapAll() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err != nil || pid <= 0 {
			return
		}
	}
}

// agent is a host-mode gcs and its negotiated connection.
type agent struct {
	*hostmode.Agent
	gc *host.GuestConnection
}

// startAgent starts gcs (state root and sockets in the test's temp dirs) and
// connects to it; everything is torn down when the test ends.
func startAgent(t testing.TB) *agent {
	t.Helper()
	a := startAgentOnly(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	gc, err := a.Connect(ctx)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { gc.Close() })
	return &agent{Agent: a, gc: gc}
}

// startAgentWith starts gcs with cfg (binary and log filled in) and
// connects to it.
func startAgentWith(t testing.TB, cfg hostmode.Config) *agent {
	t.Helper()
	a := startAgentConfig(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	gc, err := a.Connect(ctx)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { gc.Close() })
	return &agent{Agent: a, gc: gc}
}

// startAgentOnly starts gcs without accepting its connection.
func startAgentOnly(t testing.TB) *hostmode.Agent {
	t.Helper()
	return startAgentConfig(t, hostmode.Config{StateRoot: t.TempDir()})
}

func startAgentConfig(t testing.TB, cfg hostmode.Config) *hostmode.Agent {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIP (loud): needs root for the agent's private mount namespace")
	}
	var logw io.Writer
	if testing.Verbose() && os.Getenv("GCS_TEST_AGENT_LOG") == "1" {
		logw = os.Stderr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Sockets go in a short directory of hostmode's own: unix socket paths
	// are bounded, and test names are not.
	cfg.Binary, cfg.Stderr = gcsBinary, logw
	a, err := hostmode.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start agent: %v", err)
	}
	t.Cleanup(func() { a.Close(5 * time.Second) })
	return a
}
