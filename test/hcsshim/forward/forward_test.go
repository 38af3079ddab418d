package forward

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/uvmgcs/gcs/test/hcsshim/modpatch"
)

// TestForward prepares the patched hcsshim module, adds the suite to it and
// runs it against the agent ($GCS_BINARY, or one built for the run). It
// fails, never skips, when the module cannot be had: CI reaches the proxy.
func TestForward(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIP (loud): the forward hcsshim suite needs root (the agent runs containers)")
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	here, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	gcs := agentBinary(t)
	const busybox = "/bin/busybox"
	if _, err := os.Stat(busybox); err != nil {
		t.Fatalf("%s is missing (apt-get install busybox-static; `make deps` does): %v", busybox, err)
	}
	adaptations, err := Adaptations(here)
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "hcsshim")
	m, err := modpatch.Prepare(ctx, Module, Version, root, adaptations...)
	if err != nil {
		t.Fatalf("preparing %s@%s: %v", Module, Version, err)
	}
	t.Logf("%s@%s (%s) patched with %d adaptations in %s", m.Path, m.Version, m.Sum, len(adaptations), time.Since(start).Round(time.Millisecond))

	results := filepath.Join(t.TempDir(), "results.tsv")
	cmd := exec.CommandContext(ctx, goCommand(), "test", "-count=1", "-json", "-timeout", "20m", "-run", "^TestUvmgcs", "./internal/gcs")
	cmd.Dir = root
	cmd.Env = append(os.Environ(),
		"GOWORK=off",
		"UVMGCS_GCS="+gcs,
		"UVMGCS_BUSYBOX="+busybox,
		"UVMGCS_TESTDATA="+filepath.Join(here, "..", "..", "..", "protocol", "testdata"),
		"UVMGCS_RESULTS="+results,
	)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	runStart := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	var failed, skipped []string
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var ev struct {
			Action, Test, Output string
		}
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			fmt.Println(sc.Text()) // build errors come as plain lines
			continue
		}
		if ev.Action == "output" || ev.Action == "build-output" {
			fmt.Print(ev.Output)
			continue
		}
		if ev.Test == "" {
			continue
		}
		switch ev.Action {
		case "pass", "fail", "skip":
			counts[ev.Action]++
		}
		switch ev.Action {
		case "fail":
			failed = append(failed, ev.Test)
		case "skip":
			skipped = append(skipped, ev.Test)
		}
	}
	runErr := cmd.Wait()
	t.Logf("hcsshim suite: %d passed, %d failed, %d skipped; build and run %s, total with preparation %s",
		counts["pass"], counts["fail"], counts["skip"], time.Since(runStart).Round(time.Second), time.Since(start).Round(time.Second))
	if table, err := os.ReadFile(results); err == nil {
		t.Logf("request | result\n%s", strings.ReplaceAll(string(table), "\t", " | "))
	}
	if len(failed) > 0 {
		t.Errorf("failed: %s", strings.Join(failed, ", "))
	}
	if len(skipped) > 0 {
		t.Errorf("skipped (nothing in this suite may skip): %s", strings.Join(skipped, ", "))
	}
	if runErr != nil {
		t.Fatalf("go test in the patched hcsshim module: %v", runErr)
	}
	if counts["pass"] == 0 {
		t.Fatal("no test ran")
	}
}

// agentBinary is $GCS_BINARY, or the agent built for this run.
func agentBinary(t *testing.T) string {
	if p := os.Getenv("GCS_BINARY"); p != "" {
		return p
	}
	p := filepath.Join(t.TempDir(), "gcs")
	build := exec.Command(goCommand(), "build", "-o", p, "github.com/uvmgcs/gcs/cmd/gcs")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("build gcs: %v", err)
	}
	return p
}

func goCommand() string {
	if g := os.Getenv("GO"); g != "" {
		return g
	}
	return "go"
}
