package test

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestTimerSlack: the agent's threads run with its 1 ms timer slack, and
// every process it starts — a container's init, an exec, a process of its
// own — has the kernel's default 50 us, as under runc.
func TestTimerSlack(t *testing.T) {
	a := startContainerAgent(t)
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", a.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%s/timerslack_ns", task.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(b)); got != "1000000" {
			t.Errorf("agent thread %s: timer slack %s ns, want 1000000", task.Name(), got)
		}
	}

	const want = "50000\n"
	c, r := a.run(t, a.spec("cat", "/proc/self/timerslack_ns"))
	if r.stdout != want {
		t.Errorf("container init: timer slack %q (stderr %q), want %q", r.stdout, r.stderr, want)
	}
	_ = c
	c, _ = a.started(t, a.spec("sleep", "100"), false)
	if r := execIn(t, c, "cat", "/proc/self/timerslack_ns"); r.stdout != want {
		t.Errorf("exec: timer slack %q (stderr %q), want %q", r.stdout, r.stderr, want)
	}
	if r := runProcess(t, a.gc, params("cat", "/proc/self/timerslack_ns")); r.stdout != want {
		t.Errorf("agent's own process: timer slack %q (stderr %q), want %q", r.stdout, r.stderr, want)
	}
}
