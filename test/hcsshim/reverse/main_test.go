package reverse

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"time"

	"testing"

	"golang.org/x/sys/unix"
)

// hcsshimGCS is hcsshim's cmd/gcs built for this run.
var hcsshimGCS string

func TestMain(m *testing.M) {
	if bin := os.Getenv(envHelper); bin != "" {
		helperMain(bin) // does not return
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "##################################################################")
		fmt.Fprintln(os.Stderr, "## SKIPPING test/hcsshim/reverse: hcsshim's guest needs root    ##")
		fmt.Fprintln(os.Stderr, "## (mount and cgroup namespaces, runc).                          ##")
		fmt.Fprintln(os.Stderr, "##################################################################")
		return 0
	}
	if _, err := exec.LookPath("runc"); err != nil {
		fmt.Fprintln(os.Stderr, "hcsshim's guest runs containers with the runc binary: install runc (make deps does)")
		return 1
	}
	work, err := os.MkdirTemp("", "uvmgcs-reverse-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(work)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	start := time.Now()
	hcsshimGCS, err = buildHcsshimGCS(ctx, work)
	cancel()
	if err != nil {
		// Loud: the module proxy is reachable where this suite runs.
		fmt.Fprintf(os.Stderr, "FAIL: cannot prepare hcsshim %s's guest: %v\n", hcsshimVersion, err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "hcsshim %s cmd/gcs prepared and built in %v\n", hcsshimVersion, time.Since(start).Round(time.Millisecond))
	// Processes a killed guest leaves are reparented here; collect them.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "become child subreaper:", err)
		return 1
	}
	code := m.Run()
	for {
		var ws unix.WaitStatus
		if pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil); err != nil || pid <= 0 {
			break
		}
	}
	return code
}
