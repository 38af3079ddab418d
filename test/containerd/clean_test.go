package containerd

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// leftovers lists what this daemon's tasks left behind: shim and QEMU
// processes (their command lines name the daemon's private directory),
// group directories, mounts under the directory.
func (d *daemon) leftovers() (pids []int, what []string) {
	self := 0
	if d.cmd != nil {
		self = d.cmd.Process.Pid
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		cmdline := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cmdline, d.dir+"/") && !strings.Contains(cmdline, " ctr ") && !strings.HasPrefix(cmdline, d.v.ctr) {
			pids = append(pids, pid)
			what = append(what, "process "+strconv.Itoa(pid)+": "+cmdline)
		}
	}
	groups, _ := os.ReadDir(d.shim)
	for _, g := range groups {
		what = append(what, "group directory "+filepath.Join(d.shim, g.Name()))
	}
	if f, err := os.Open("/proc/self/mountinfo"); err == nil {
		s := bufio.NewScanner(f)
		for s.Scan() {
			fields := strings.Fields(s.Text())
			if len(fields) > 4 && strings.HasPrefix(fields[4], d.dir+"/") {
				what = append(what, "mount "+fields[4])
			}
		}
		f.Close()
	}
	return pids, what
}

// checkClean fails the test when, a few seconds after it ended, anything
// of its tasks is left; it kills the processes it finds (only ones whose
// command line names this run's private directory).
func (d *daemon) checkClean(t testing.TB) {
	t.Helper()
	var pids []int
	var what []string
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if pids, what = d.leftovers(); len(what) == 0 {
			return
		}
	}
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	t.Errorf("left behind after the test:\n  %s", strings.Join(what, "\n  "))
}
