package cri

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/uvmgcs/gcs/internal/ociimage"
)

const (
	e2eImages = "registry.k8s.io/e2e-test-images/"
	criTools  = "gcr.io/k8s-staging-cri-tools/"
)

// critestFocus are the groups a VM pod can pass (issue 13), as ginkgo
// regexps over critest's spec names.
var critestFocus = []string{
	`\[k8s\.io\] Runtime info`,
	`\[k8s\.io\] PodSandbox`,
	`\[k8s\.io\] Container `,
	`\[k8s\.io\] Container OOM`,
	`\[k8s\.io\] Idempotence`,
	`\[k8s\.io\] Streaming`,
	`\[k8s\.io\] Networking`,
	`\[k8s\.io\] Multiple Containers`,
	`\[k8s\.io\] Security Context`,
	`\[k8s\.io\] Image Manager`,
}

// critestSkip are the specs inside those groups that cannot apply to a
// VM pod, or not to this node; README.md gives each one's reason. Both
// handlers run the same specs.
var critestSkip = []string{
	`HostNetwork|HostPID|HostIpc|host network|host PID|host IPC|hostNetwork|hostPID|hostIPC`,
	`[Pp]ort[Ff]orward|port forward`,
	`[Mm]ount [Pp]ropagation`,
	`AppArmor|[Aa]pparmor|SELinux`,
	`digest`,
	`UserNamespaces`,
	`SupplementalGroupsPolicy`,
	`benchmark`,
	// Debian busybox's sh runs applets without exec, so a masked /bin/ls
	// is never executed.
	`runtime should support MaskedPaths`,
}

// critestSkip16 are containerd 1.6's own failures, the same on any
// runtime.
var critestSkip16 = []string{
	// containerd 1.6 answers NotFound (1.7 and 2.x do not).
	`Idempotence Stop(PodSandbox|Container) .*should not return an error if not found`,
}

// critestImages are the images critest pulls, busybox-based and built
// here: each has content of its own (a marker file), the user-* variants
// the config.User critest checks.
func critestImages(t *testing.T, work string) []ociimage.Image {
	t.Helper()
	bb, err := ociimage.BusyboxLayer(work)
	if err != nil {
		t.Fatal(err)
	}
	users, err := ociimage.GzipTar([]ociimage.Entry{
		{Name: "etc/passwd", Body: "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/bin/false\n" +
			"default-user:x:1000:1000::/home/default-user:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"},
		{Name: "etc/group", Body: "root:x:0:\nwww-data:x:33:\ndefault-user:x:1000:\n" +
			"group-defined-in-image:x:50000:default-user\nnogroup:x:65534:\n"},
	})
	if err != nil {
		t.Fatal(err)
	}
	nnp := noNewPrivsLayer(t, work)
	// Debian's busybox-static has no pgrep applet; critest's execSync
	// timeout check runs `pgrep sleep`.
	pgrep, err := ociimage.GzipTar([]ociimage.Entry{{Name: "usr/", Dir: true}, {Name: "usr/bin/", Dir: true},
		{Name: "usr/bin/pgrep", Body: "#!/bin/sh\nexec pidof \"$@\"\n", Mode: 0o755}})
	if err != nil {
		t.Fatal(err)
	}
	// The web servers log their name and carry nginx's "master process"
	// on their command line (busybox httpd's realm), as critest checks.
	web := func(page string) map[string]any {
		return map[string]any{"Entrypoint": []string{"/bin/sh", "-c", "echo " + page +
			` && mkdir -p /www && echo ` + page + ` >/www/index.html && exec httpd -f -p 80 -h /www -r "nginx: master process"`}}
	}
	specs := []struct {
		name   string
		config map[string]any
		extra  []byte
		marker string // content of /etc/uvmgcs-image; the name if empty
	}{
		{name: "registry.k8s.io/pause:3.9", config: map[string]any{"Entrypoint": []string{"/bin/sh", "-c", pauseScript}}},
		{name: "k8s.gcr.io/pause:3.9", config: map[string]any{"Entrypoint": []string{"/bin/sh", "-c", pauseScript}}, marker: "registry.k8s.io/pause:3.9"},
		{name: e2eImages + "busybox:1.29-2", config: map[string]any{"Cmd": []string{"sh"}}},
		{name: e2eImages + "nginx:1.14-2", config: web("nginx")},
		{name: e2eImages + "httpd:2.4.39-4", config: web("httpd")},
		{name: e2eImages + "nonewprivs:1.3", config: map[string]any{"Entrypoint": []string{"/usr/local/bin/nnp"}}, extra: nnp},
		{name: criTools + "test-image-user-uid:latest", config: map[string]any{"User": "1002"}},
		{name: criTools + "test-image-user-username:latest", config: map[string]any{"User": "www-data"}},
		{name: criTools + "test-image-user-uid-group:latest", config: map[string]any{"User": "1003:1003"}},
		{name: criTools + "test-image-user-username-group:latest", config: map[string]any{"User": "www-data:www-data"}},
		{name: criTools + "test-image-predefined-group:latest", config: map[string]any{"User": "1000"}},
		{name: criTools + "test-image-latest:latest"},
		{name: criTools + "test-image-tag:test"},
		{name: criTools + "test-image-tag:all"},
		{name: criTools + "test-image-1:latest"},
		{name: criTools + "test-image-2:latest"},
		{name: criTools + "test-image-3:latest"},
		// Different tags of the same image.
		{name: criTools + "test-image-tags:1", marker: "test-image-tags"},
		{name: criTools + "test-image-tags:2", marker: "test-image-tags"},
		{name: criTools + "test-image-tags:3", marker: "test-image-tags"},
	}
	var imgs []ociimage.Image
	for _, s := range specs {
		cfg := map[string]any{"Cmd": []string{"sh"}}
		for k, v := range s.config {
			cfg[k] = v
		}
		cfg["Env"] = []string{pathEnv}
		marker := s.marker
		if marker == "" {
			marker = s.name
		}
		m, err := ociimage.GzipTar([]ociimage.Entry{{Name: "etc/uvmgcs-image", Body: marker + "\n"}})
		if err != nil {
			t.Fatal(err)
		}
		layers := [][]byte{bb, users, pgrep, m}
		if s.extra != nil {
			layers = append(layers, s.extra)
		}
		imgs = append(imgs, ociimage.Image{Name: s.name, Config: cfg, Layers: layers})
	}
	return imgs
}

// noNewPrivsLayer holds /usr/local/bin/nnp, set-user-ID root, printing
// its effective uid as critest's nonewprivs image does.
func noNewPrivsLayer(t *testing.T, work string) []byte {
	t.Helper()
	dir := filepath.Join(work, "nnp")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src := "package main\n\nimport (\n\t\"fmt\"\n\t\"os\"\n)\n\nfunc main() { fmt.Printf(\"Effective uid: %d\\n\", os.Geteuid()) }\n"
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "nnp")
	build := exec.Command("go", "build", "-o", bin, "main.go")
	build.Dir = dir
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GO111MODULE=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build nnp: %v: %s", err, out)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ociimage.GzipTar([]ociimage.Entry{{Name: "usr/", Dir: true}, {Name: "usr/local/", Dir: true},
		{Name: "usr/local/bin/", Dir: true}, {Name: "usr/local/bin/nnp", Body: string(b), Mode: 0o4755}})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// critestResult is the summary ginkgo prints.
type critestResult struct {
	passed, failed, flaked, pending, skipped int
	elapsed                                  time.Duration
	passedSpecs                              map[string]bool // by full name
}

// passedSpecs are the full names of the specs a ginkgo JSON report says
// passed.
func passedSpecs(report string) (map[string]bool, error) {
	b, err := os.ReadFile(report)
	if err != nil {
		return nil, err
	}
	var suites []struct {
		SpecReports []struct {
			ContainerHierarchyTexts []string
			LeafNodeText            string
			State                   string
		}
	}
	if err := json.Unmarshal(b, &suites); err != nil {
		return nil, fmt.Errorf("%s: %w", report, err)
	}
	passed := map[string]bool{}
	for _, s := range suites {
		for _, r := range s.SpecReports {
			if r.State == "passed" && r.LeafNodeText != "" {
				passed[strings.Join(append(r.ContainerHierarchyTexts, r.LeafNodeText), " ")] = true
			}
		}
	}
	return passed, nil
}

// critestSummary is ginkgo's last line: "N Passed | N Failed | [N Flaked |]
// N Pending | N Skipped".
var (
	critestSummary = regexp.MustCompile(`\d+ Passed \| \d+ Failed \|[^\n]*\d+ Skipped`)
	critestCount   = regexp.MustCompile(`(\d+) (Passed|Failed|Flaked|Pending|Skipped)`)
)

// critestNode is a fresh node of containerd v with the offline registry
// and critest's images pushed to it.
func critestNode(t *testing.T, v version) *node {
	t.Helper()
	if _, err := os.Stat(filepath.Join(toolsDir(), "critest")); err != nil {
		t.Fatalf("critest is missing in %s (make cri-tools builds it)", toolsDir())
	}
	n := newNode(t, v)
	n.startRegistry(t)
	n.pushImages(t, critestImages(t, n.dir))
	if err := os.WriteFile(filepath.Join(n.dir, "crictl.yaml"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return n
}

// runCritest runs critest's chosen groups against handler on node n and
// returns ginkgo's counts; its output is kept in critest-<handler>.log.
func runCritest(t *testing.T, n *node, handler string) critestResult {
	t.Helper()
	v := n.v
	skip := critestSkip
	if !v.v2 {
		skip = append(append([]string(nil), skip...), critestSkip16...)
	}
	focus := strings.Join(critestFocus, "|")
	if f := os.Getenv("UVMGCS_CRITEST_FOCUS"); f != "" {
		focus = f // one spec while debugging
	}
	report := filepath.Join(n.dir, "critest-"+handler+".json")
	cmd := n.inNetns(t.Context(), filepath.Join(toolsDir(), "critest"),
		"-runtime-endpoint", "unix://"+n.sock, "-image-endpoint", "unix://"+n.sock,
		"-config", filepath.Join(n.dir, "crictl.yaml"), "-runtime-handler", handler,
		"-ginkgo.focus", focus,
		"-ginkgo.skip", strings.Join(skip, "|"),
		// A spec that fails once and passes on retry is reported (its
		// name logged, counted as flaked), not failed: containerd 1.6
		// on a loaded machine sometimes handles an OOM-killed task's
		// exit before its OOM event, and the reason is lost.
		"-ginkgo.flake-attempts", "2",
		"-ginkgo.json-report", report,
		"-ginkgo.no-color", "-ginkgo.timeout", "50m")
	cmd.Dir = n.dir
	// Written as it runs (UVMGCS_TEST_KEEP keeps it) and kept for the
	// summary.
	logFile, err := os.Create(filepath.Join(n.dir, "critest-"+handler+".log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	var out bytes.Buffer
	cmd.Stdout = io.MultiWriter(&out, logFile)
	cmd.Stderr = cmd.Stdout
	start := time.Now()
	runErr := cmd.Run()
	r := critestResult{elapsed: time.Since(start)}
	sum := critestSummary.FindString(out.String())
	if sum == "" {
		t.Errorf("critest --runtime-handler %s: %v; no summary in its output:\n%s", handler, runErr, tail(out.String(), 8<<10))
		return r
	}
	if r.passedSpecs, err = passedSpecs(report); err != nil {
		t.Errorf("critest --runtime-handler %s: its report: %v", handler, err)
	}
	fields := map[string]*int{"Passed": &r.passed, "Failed": &r.failed, "Flaked": &r.flaked, "Pending": &r.pending, "Skipped": &r.skipped}
	for _, m := range critestCount.FindAllStringSubmatch(sum, -1) {
		fmt.Sscan(m[1], fields[m[2]])
	}
	t.Logf("critest --runtime-handler %s: %d passed (%d on a second attempt), %d failed, %d pending, %d skipped in %s",
		handler, r.passed, r.flaked, r.failed, r.pending, r.skipped, r.elapsed.Round(time.Second))
	lines := strings.Split(out.String(), "\n")
	for i, l := range lines {
		if strings.Contains(l, "FLAKEY TEST") && i+1 < len(lines) {
			t.Logf("critest: %s %s", strings.TrimSpace(l), strings.TrimSpace(lines[i+1]))
		}
	}
	if runErr != nil || r.failed != 0 {
		t.Errorf("critest --runtime-handler %s: %v:\n%s", handler, runErr, failures(out.String()))
	}
	return r
}

// failures are the lines of critest's output around its failed specs.
func failures(out string) string {
	i := strings.Index(out, "Summarizing")
	if i < 0 {
		return tail(out, 16<<10)
	}
	return tail(out[i:], 16<<10)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// TestCritest runs critest's chosen groups on each containerd, first on
// the runc handler (the baseline), then on uvmgcs on the same node, and
// logs both counts (make critest runs it alone).
func TestCritest(t *testing.T) {
	for _, v := range []version{containerd16(), containerd2()} {
		t.Run("containerd-"+v.name, func(t *testing.T) {
			n := critestNode(t, v)
			switch h := os.Getenv("UVMGCS_CRITEST_HANDLER"); h { // one handler alone, while debugging
			case HandlerRunc:
				runCritest(t, n, h)
				return
			case HandlerUVMGCS:
				if why := uvmgcsMissing(); why != "" {
					t.Skip("SKIP (loud): " + why)
				}
				runCritest(t, n, h)
				return
			}
			runc := runCritest(t, n, HandlerRunc)
			if why := uvmgcsMissing(); why != "" {
				t.Skip("SKIP (loud) critest on uvmgcs: " + why)
			}
			uvm := runCritest(t, n, HandlerUVMGCS)
			// Both run the same specs: one runc passes and uvmgcs does
			// not (failed, or skipped by critest itself, as its RRO
			// specs are when a handler's features lack rro) fails.
			var rest []string
			for name := range runc.passedSpecs {
				if !uvm.passedSpecs[name] {
					rest = append(rest, name)
				}
			}
			sort.Strings(rest)
			if len(rest) > 0 {
				t.Errorf("passed on runc, not on uvmgcs (%d):\n\t%s", len(rest), strings.Join(rest, "\n\t"))
			}
			t.Logf("critest on containerd %s: runc %d passed, %d failed, %d skipped in %s; uvmgcs %d passed, %d failed, %d skipped in %s",
				v.name, runc.passed, runc.failed, runc.skipped, runc.elapsed.Round(time.Second),
				uvm.passed, uvm.failed, uvm.skipped, uvm.elapsed.Round(time.Second))
		})
	}
}
