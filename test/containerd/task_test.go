package containerd

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// taskStatus is the STATUS column of `ctr task ls` for id ("" if absent),
// and its PID.
func (d *daemon) taskStatus(t *testing.T, id string) (status, pid string) {
	t.Helper()
	out, err := d.ctrOK(context.Background(), "task", "ls")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) == 3 && f[0] == id {
			return f[2], f[1]
		}
	}
	return "", ""
}

// waitStatus polls until id's status is want.
func (d *daemon) waitStatus(t *testing.T, id, want string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		st, _ := d.taskStatus(t, id)
		if st == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s is %q, want %q", id, st, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// runDetached starts a long-running task and registers its removal.
func (d *daemon) runDetached(t *testing.T, id string, extra ...string) {
	t.Helper()
	args := append([]string{"-d", "--null-io"}, extra...)
	args = append(args, busyboxImage, id, "sleep", "100000")
	if _, err := d.ctrOK(context.Background(), d.runArgs(args...)...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.remove(id) })
}

// remove kills and deletes a task and its container, whatever state they
// are in.
func (d *daemon) remove(id string) {
	ctx := context.Background()
	d.ctr(ctx, "task", "resume", id)
	d.ctr(ctx, "task", "kill", "-a", "-s", "SIGKILL", id)
	for i := 0; i < 100; i++ {
		if _, _, code := d.ctr(ctx, "task", "rm", id); code == 0 {
			break
		}
		if out, _, _ := d.ctr(ctx, "task", "ls"); !strings.Contains(out, id+" ") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	d.ctr(ctx, "container", "rm", id)
}

// events collects `ctr events` lines until stopped.
type events struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []string
	done  chan struct{}
}

func (d *daemon) watchEvents(t *testing.T) *events {
	t.Helper()
	e := &events{cmd: exec.Command(d.v.ctr, "--address", d.sock, "--namespace", namespace, "events"), done: make(chan struct{})}
	out, err := e.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(e.done)
		s := bufio.NewScanner(out)
		for s.Scan() {
			e.mu.Lock()
			e.lines = append(e.lines, s.Text())
			e.mu.Unlock()
		}
	}()
	t.Cleanup(e.stop)
	time.Sleep(200 * time.Millisecond) // subscribed
	return e
}

func (e *events) stop() {
	e.cmd.Process.Kill()
	e.cmd.Wait()
	<-e.done
}

// wait returns the index of the first line after from with topic that
// mentions id, waiting up to a minute.
func (e *events) wait(t *testing.T, topic, id string) int {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		e.mu.Lock()
		for i, l := range e.lines {
			if strings.Contains(l, topic) && strings.Contains(l, `"`+id+`"`) {
				e.mu.Unlock()
				return i
			}
		}
		e.mu.Unlock()
		time.Sleep(100 * time.Millisecond)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	t.Fatalf("no %s event for %s; events:\n%s", topic, id, strings.Join(e.lines, "\n"))
	return -1
}

// TestTaskLifecycle drives one running task through what ctr offers:
// exec (output and exit code), ps, metrics, pause/resume (an exec into a
// paused task is refused), kill with its exit delivered to the attached
// ctr as 137.
func TestTaskLifecycle(t *testing.T) {
	forEach(t, func(t *testing.T, d *daemon) {
		ctx := context.Background()
		id := "life-" + d.id()
		ev := d.watchEvents(t)
		type result struct {
			out  string
			code int
		}
		attached := make(chan result, 1)
		go func() {
			out, _, code := d.ctr(ctx, d.runArgs("--rm", busyboxImage, id, "sh", "-c", "echo started; exec sleep 100000")...)
			attached <- result{out, code}
		}()
		t.Cleanup(func() { d.remove(id) })
		ev.wait(t, "/tasks/start", id)
		d.waitStatus(t, id, "RUNNING")

		out, errs, code := d.ctr(ctx, "task", "exec", "--exec-id", "e1", id, "sh", "-c", "cat /etc/passwd | head -1; exit 5")
		if code != 5 || !strings.HasPrefix(out, "root:x:0:0") {
			t.Fatalf("exec: exit %d (want 5), output %q %q", code, out, errs)
		}
		ev.wait(t, "/tasks/exec-added", "e1")
		ev.wait(t, "/tasks/exec-started", "e1")

		out, err := d.ctrOK(ctx, "task", "ps", id)
		if err != nil {
			t.Fatal(err)
		}
		if pids := regexp.MustCompile(`(?m)^\d+`).FindAllString(out, -1); len(pids) == 0 {
			t.Fatalf("ctr task ps listed no process:\n%s", out)
		}
		out, err = d.ctrOK(ctx, "task", "metrics", id)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range []string{"memory.usage_in_bytes", "pids.current"} {
			if !strings.Contains(out, m) {
				t.Fatalf("ctr task metrics has no %s:\n%s", m, out)
			}
		}

		if _, err := d.ctrOK(ctx, "task", "pause", id); err != nil {
			t.Fatal(err)
		}
		ev.wait(t, "/tasks/paused", id)
		d.waitStatus(t, id, "PAUSED")
		if _, _, code := d.ctr(ctx, "task", "exec", "--exec-id", "e2", id, "true"); code == 0 {
			t.Fatal("an exec into a paused task succeeded")
		}
		if _, err := d.ctrOK(ctx, "task", "resume", id); err != nil {
			t.Fatal(err)
		}
		ev.wait(t, "/tasks/resumed", id)
		d.waitStatus(t, id, "RUNNING")

		if _, err := d.ctrOK(ctx, "task", "kill", "-s", "SIGKILL", id); err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-attached:
			if r.code != 137 || !strings.Contains(r.out, "started") {
				t.Fatalf("attached ctr: exit %d (want 137), output %q", r.code, r.out)
			}
		case <-time.After(2 * time.Minute):
			t.Fatal("the attached ctr did not return after the kill")
		}
		ev.wait(t, "/tasks/exit", id)
		ev.wait(t, "/tasks/delete", id)
	})
}

// TestGroup runs two tasks with the same group annotation: one VM (both
// report its pid), one shim; a third task outside the group gets its own.
func TestGroup(t *testing.T) {
	forEach(t, func(t *testing.T, d *daemon) {
		group := "--annotation=io.containerd.runc.v2.group=g-" + d.id()
		a, b, c := "ga-"+d.id(), "gb-"+d.id(), "gc-"+d.id()
		d.runDetached(t, a, group)
		d.runDetached(t, b, group)
		d.runDetached(t, c)
		_, pa := d.taskStatus(t, a)
		_, pb := d.taskStatus(t, b)
		_, pc := d.taskStatus(t, c)
		if pa == "" || pa != pb || pa == pc {
			t.Fatalf("VM pids: %s and %s in the group (want equal), %s outside (want different)", pa, pb, pc)
		}
		if out, err := d.ctrOK(context.Background(), "task", "exec", "--exec-id", "x", b, "echo", "in-b"); err != nil || strings.TrimSpace(out) != "in-b" {
			t.Fatalf("exec in the second task: %v %q", err, out)
		}
		// Deleting one task of the group leaves the other running.
		d.remove(a)
		if st, _ := d.taskStatus(t, b); st != "RUNNING" {
			t.Fatalf("after deleting %s, %s is %q", a, b, st)
		}
		if out, err := d.ctrOK(context.Background(), "task", "exec", "--exec-id", "y", b, "echo", "still"); err != nil || strings.TrimSpace(out) != "still" {
			t.Fatalf("exec after the other task's deletion: %v %q", err, out)
		}
	})
}

// TestMemoryLimitOOM: a container over its memory limit is killed by the
// OOM killer in the VM: exit 137, a TaskOOM event before the TaskExit.
func TestMemoryLimitOOM(t *testing.T) {
	forEach(t, func(t *testing.T, d *daemon) {
		id := "oom-" + d.id()
		ev := d.watchEvents(t)
		out, errs, code := d.ctr(context.Background(), d.runArgs("--rm", "--memory-limit", fmt.Sprint(32<<20), busyboxImage, id,
			"dd", "if=/dev/zero", "of=/dev/null", "bs=128M", "count=1")...)
		if code != 137 {
			t.Fatalf("exit %d, want 137 (%q %q)", code, out, errs)
		}
		oom, exit := ev.wait(t, "/tasks/oom", id), ev.wait(t, "/tasks/exit", id)
		if oom > exit {
			t.Fatalf("TaskOOM (event %d) came after TaskExit (event %d)", oom, exit)
		}
	})
}

// TestContainerdRestart: containerd restarts while a task runs; the task
// survives, and its exit still reaches containerd.
func TestContainerdRestart(t *testing.T) {
	forEach(t, func(t *testing.T, d *daemon) {
		id := "restart-" + d.id()
		d.runDetached(t, id)
		_, pid := d.taskStatus(t, id)
		if err := d.restart(); err != nil {
			t.Fatal(err)
		}
		st, pid2 := d.taskStatus(t, id)
		if st != "RUNNING" || pid2 != pid {
			t.Fatalf("after the restart: %s %s, want RUNNING %s", st, pid2, pid)
		}
		ev := d.watchEvents(t)
		if _, err := d.ctrOK(context.Background(), "task", "kill", "-s", "SIGKILL", id); err != nil {
			t.Fatal(err)
		}
		ev.wait(t, "/tasks/exit", id)
		d.waitStatus(t, id, "STOPPED")
	})
}
