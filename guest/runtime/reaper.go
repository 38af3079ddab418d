package runtime

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/uvmgcs/gcs/internal/log"
)

// Reaper collects the agent's children that nobody waits for: orphans
// reparented to the agent (it is a child subreaper) and the leftovers of
// container start-up. A process started through Start is tracked until
// Untrack: its owner waits for it, and the reaper never touches it.
//
// Reaping is by pid, never wait(-1): a wildcard wait would steal the exit
// status of a tracked process from its owner.
type Reaper struct {
	procRoot string

	// mu is held across Start and Reap, so a child forked by Start is
	// tracked before any scan can see it.
	mu      sync.Mutex
	tracked map[int]int // pid -> number of owners
	// exits are the tracked pids someone awaits the exit of, with what
	// to run once the pid has exited (it is left for its owner to reap).
	exits map[int][]func()
}

// NewReaper returns a reaper for this process's children.
func NewReaper() *Reaper { return newReaper("/proc") }

func newReaper(procRoot string) *Reaper {
	return &Reaper{procRoot: procRoot, tracked: make(map[int]int), exits: make(map[int][]func())}
}

// Start runs start, which forks a child and returns its pid, and tracks the
// pid. While start runs no reaping happens, so processes start forks and
// waits for itself (libcontainer's intermediate processes) are safe too.
func (r *Reaper) Start(start func() (int, error)) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pid, err := start()
	if err != nil {
		return 0, err
	}
	r.tracked[pid]++
	return pid, nil
}

// Track marks an already running child (one a tracked start produced, such
// as a container's init reparented to the agent) as owned.
func (r *Reaper) Track(pid int) {
	r.mu.Lock()
	r.tracked[pid]++
	r.mu.Unlock()
}

// Untrack ends one owner's claim on pid, after that owner has waited for it.
func (r *Reaper) Untrack(pid int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tracked[pid] <= 1 {
		delete(r.tracked, pid)
		return
	}
	r.tracked[pid]--
}

// Tracked reports how many pids are tracked.
func (r *Reaper) Tracked() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.tracked)
}

// OnExit runs fn on a goroutine of its own once tracked child pid has
// exited; the child stays a zombie for its owner to wait for. Until then
// nothing waits: no goroutine and no thread per running process. Reap (on
// SIGCHLD, via Run) notices the exit.
func (r *Reaper) OnExit(pid int, fn func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if exited(pid) {
		go fn()
		return
	}
	r.exits[pid] = append(r.exits[pid], fn)
}

// anyExited reports whether some child has exited and waits to be
// collected, without collecting it.
func anyExited() bool {
	var info unix.Siginfo
	err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT|unix.WALL, nil)
	return err == nil && info.Signo != 0
}

// exited reports whether child pid has exited, without reaping it.
func exited(pid int) bool {
	var info unix.Siginfo
	err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
	// Linux zeroes info when no child is waitable; an error means the
	// pid is no child of ours (any more): nothing will ever report it.
	return err != nil || info.Signo != 0
}

// Reap announces the exits of awaited tracked children, collects every
// exited child that is not tracked and returns the pids it collected.
func (r *Reaper) Reap() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.announce()
	var reaped []int
	for _, pid := range r.children() {
		if r.tracked[pid] > 0 {
			continue
		}
		var ws unix.WaitStatus
		// WNOHANG: a child still running is left alone (Wait4 returns 0).
		if got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil); err == nil && got == pid {
			reaped = append(reaped, pid)
		}
	}
	return reaped
}

// Run reaps on every SIGCHLD (and once a second, in case a signal was
// coalesced) until ctx ends.
func (r *Reaper) Run(ctx context.Context) {
	ch := make(chan os.Signal, 16)
	signal.Notify(ch, unix.SIGCHLD)
	defer signal.Stop(ch)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	full := true
	for {
		reap := r.reapExited
		if full {
			reap = r.Reap
		}
		for _, pid := range reap() {
			log.G(ctx).WithField(log.FieldProcessID, pid).Trace("reaped orphan")
		}
		// Most SIGCHLDs are for children their owner already collected
		// (libcontainer waits for its own setup processes): with no
		// exited child left there is nothing to announce or reap, and no
		// need to look at every awaited process and at /proc. A signal
		// gets the light pass (reapExited), the tick the full one.
		for idle := true; idle; {
			select {
			case <-ctx.Done():
				return
			case <-ch:
				idle, full = !anyExited(), false
			case <-t.C:
				idle, full = false, true
			}
		}
	}
}

// announce starts the functions awaiting the exits of tracked children
// that have exited. r.mu is held.
func (r *Reaper) announce() {
	for pid, fns := range r.exits {
		if exited(pid) {
			for _, fn := range fns {
				go fn()
			}
			delete(r.exits, pid)
		}
	}
}

// reapExited is Reap's pass for a SIGCHLD: it announces the exits of
// awaited children and collects the exited children the kernel hands out
// first as long as they are untracked, without reading /proc. The usual
// exit is a tracked one (a container's init or exec, left to its owner),
// and a full pass would read every thread's children file (some fifty
// system calls) ahead of the goroutine that reports the exit. An orphan
// whose exit is queued behind a tracked child's waits for the next signal
// or the next tick's full pass (at most a second, as a zombie).
func (r *Reaper) reapExited() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.announce()
	var reaped []int
	for {
		pid, ok := firstExited()
		if !ok || r.tracked[pid] > 0 {
			return reaped
		}
		var ws unix.WaitStatus
		if got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil); err != nil || got != pid {
			return reaped
		}
		reaped = append(reaped, pid)
	}
}

// childInfo is the part of a siginfo_t that waitid fills in for a child
// (x/sys/unix's Siginfo does not name si_pid).
type childInfo struct {
	signo, errno, code, _ int32
	pid, uid, status      int32
	_                     [100]byte // to siginfo_t's 128 bytes
}

// firstExited is the pid of an exited child, left unreaped.
func firstExited() (int, bool) {
	var info childInfo
	_, _, errno := unix.Syscall6(unix.SYS_WAITID, unix.P_ALL, 0, uintptr(unsafe.Pointer(&info)),
		unix.WEXITED|unix.WNOHANG|unix.WNOWAIT|unix.WALL, 0, 0)
	if errno != 0 || info.signo == 0 {
		return 0, false
	}
	return int(info.pid), true
}

// children lists this process's children: from each thread's children file
// when the kernel has them, else by scanning every process's parent. It
// runs on every SIGCHLD, so it reads with plain system calls (three per
// thread) rather than through os.File and its poller registration.
func (r *Reaper) children() []int {
	task := filepath.Join(r.procRoot, "self", "task")
	tids, err := os.ReadDir(task)
	if err != nil {
		return r.scanParents(os.Getpid())
	}
	var pids []int
	var buf [4096]byte
	found := false
	for _, t := range tids {
		data, err := readSmall(filepath.Join(task, t.Name(), "children"), buf[:])
		if err != nil {
			continue
		}
		found = true
		for s := range strings.FieldsSeq(string(data)) {
			if pid, err := strconv.Atoi(s); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	if found {
		return pids
	}
	return r.scanParents(os.Getpid())
}

// readSmall reads a whole proc file, into buf while it fits.
func readSmall(path string, buf []byte) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	data := buf[:0]
	for {
		if len(data) == cap(data) {
			data = append(data, 0)[:len(data)]
		}
		n, err := unix.Read(fd, data[len(data):cap(data)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return data, nil
		}
		data = data[:len(data)+n]
	}
}

// scanParents finds the processes whose parent is ppid in /proc/*/stat.
func (r *Reaper) scanParents(ppid int) []int {
	ents, err := os.ReadDir(r.procRoot)
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(r.procRoot, e.Name(), "stat"))
		if err != nil {
			continue
		}
		if p, err := parentOf(b); err == nil && p == ppid {
			pids = append(pids, pid)
		}
	}
	return pids
}

// parentOf parses the ppid out of a /proc/<pid>/stat line; the command name
// in parentheses may itself hold spaces and parentheses.
func parentOf(stat []byte) (int, error) {
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("stat: no command name")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0, errors.New("stat: short line")
	}
	return strconv.Atoi(f[1])
}
