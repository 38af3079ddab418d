package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	apitypes "github.com/containerd/containerd/api/types"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/uvmgcs/gcs/shim"
)

// stateRootEnv overrides where group directories live (tests).
const stateRootEnv = "UVMGCS_SHIM_STATE"

// groupDirEnv hands the daemon its group directory.
const groupDirEnv = "UVMGCS_SHIM_GROUP_DIR"

const defaultStateRoot = "/run/uvmgcs/shim"

// groupLabels name a task's group, in order; a task without them is a
// group of its own.
var groupLabels = []string{"io.containerd.runc.v2.group", "io.kubernetes.cri.sandbox-id"}

// Files the shim keeps in a task's bundle and its group's directory.
const (
	bundleGroupFile = "uvmgcs-group" // bundle: the group directory
	socketName      = "shim.sock"
	shimPidName     = "shim.pid"
	qemuPidName     = "qemu.pid"
	lockName        = "lock"
)

func stateRoot() string {
	if r := os.Getenv(stateRootEnv); r != "" {
		return r
	}
	return defaultStateRoot
}

// groupKey is the task's group: an annotation of its spec, else its id.
func groupKey(bundle, id string) string {
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return id
	}
	var spec struct {
		Annotations map[string]string `json:"annotations"`
	}
	if json.Unmarshal(b, &spec) != nil {
		return id
	}
	for _, l := range groupLabels {
		if g := spec.Annotations[l]; g != "" {
			return g
		}
	}
	return id
}

// groupDir is the group's directory: one per containerd, namespace and
// group, short enough for a socket path.
func groupDir(address, namespace, group string) string {
	h := sha256.Sum256([]byte(address + "\x00" + namespace + "\x00" + group))
	return filepath.Join(stateRoot(), hex.EncodeToString(h[:12]))
}

func alive(sock string) bool {
	c, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// start prints the address of the group's daemon, starting it first when
// none answers. containerd reads stdout and stderr together: nothing else
// may be printed on success.
func start(f flags) error {
	if f.id == "" || f.namespace == "" {
		return errors.New("start needs -id and -namespace")
	}
	if strings.ContainsAny(f.id, "/\x00") || f.id == "." || f.id == ".." {
		return fmt.Errorf("task id %q is not a file name", f.id)
	}
	dir := groupDir(f.address, f.namespace, groupKey(f.bundle, f.id))
	lock, err := lockGroup(dir)
	if err != nil {
		return err
	}
	defer lock.Close()
	sock := filepath.Join(dir, socketName)
	addr := "unix://" + sock
	// The daemon must not exit between this answer and the task's Create.
	if err := os.WriteFile(shim.PendingPath(dir, f.id), nil, 0o600); err != nil {
		return err
	}
	if !alive(sock) {
		if err := spawn(f, dir, sock); err != nil {
			os.Remove(shim.PendingPath(dir, f.id))
			return err
		}
	}
	for name, v := range map[string]string{"address": addr, bundleGroupFile: dir} {
		if err := os.WriteFile(filepath.Join(f.bundle, name), []byte(v), 0o600); err != nil {
			return err
		}
	}
	_, err = fmt.Fprint(os.Stdout, addr)
	return err
}

// lockGroup creates the group's directory and takes its lock, which start
// and an exiting daemon hold. A daemon removes the directory under the
// lock: a lock taken on a removed directory is retried.
func lockGroup(dir string) (*os.File, error) {
	for i := 0; i < 10; i++ {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		path := filepath.Join(dir, lockName)
		lock, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			continue // removed meanwhile
		}
		if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
			lock.Close()
			return nil, fmt.Errorf("lock %s: %w", dir, err)
		}
		var held, cur unix.Stat_t
		if unix.Fstat(int(lock.Fd()), &held) == nil && unix.Stat(path, &cur) == nil && held.Ino == cur.Ino && held.Dev == cur.Dev {
			return lock, nil
		}
		lock.Close()
	}
	return nil, fmt.Errorf("lock %s: the directory keeps being removed", dir)
}

// pendingStart bounds how long a start's promise keeps a daemon alive.
const pendingStart = time.Minute

// pending reports whether a start handed out the daemon's address for a
// task not created yet.
func pending(dir string) bool {
	files, _ := filepath.Glob(shim.PendingPath(dir, "*"))
	for _, f := range files {
		if st, err := os.Stat(f); err == nil && time.Since(st.ModTime()) < pendingStart {
			return true
		}
	}
	return false
}

// spawn starts the group's daemon, detached, serving on sock (fd 3).
func spawn(f flags, dir, sock string) error {
	os.Remove(sock)
	l, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", sock, err)
	}
	ul := l.(*net.UnixListener)
	ul.SetUnlinkOnClose(false) // the daemon serves it
	defer ul.Close()
	lf, err := ul.File()
	if err != nil {
		return err
	}
	defer lf.Close()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	args := []string{"-namespace", f.namespace, "-id", f.id, "-address", f.address, "-publish-binary", f.publishBinary, "-bundle", f.bundle}
	if f.debug {
		args = append(args, "-debug")
	}
	cmd := exec.Command(self, args...)
	cmd.Dir = f.bundle
	cmd.ExtraFiles = []*os.File{lf}
	cmd.Env = append(os.Environ(), groupDirEnv+"="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		os.Remove(sock)
		return fmt.Errorf("start the shim daemon: %w", err)
	}
	pid := cmd.Process.Pid
	_ = cmd.Process.Release()
	return os.WriteFile(filepath.Join(dir, shimPidName), []byte(strconv.Itoa(pid)), 0o600)
}

// deleteAction cleans up after a task containerd could not delete through
// its shim: when the group's daemon is dead, the VM it left is killed and
// the group's directory removed. It prints a protobuf DeleteResponse.
func deleteAction(f flags) error {
	dir := ""
	if b, err := os.ReadFile(filepath.Join(f.bundle, bundleGroupFile)); err == nil {
		dir = strings.TrimSpace(string(b))
	}
	if dir == "" && f.namespace != "" {
		dir = groupDir(f.address, f.namespace, groupKey(f.bundle, f.id))
	}
	if dir != "" && filepath.Dir(dir) == filepath.Clean(stateRoot()) {
		// Under the group's lock: a start may be bringing up a new daemon.
		if lock, err := lockGroup(dir); err == nil {
			if !alive(filepath.Join(dir, socketName)) {
				killVM(filepath.Join(dir, qemuPidName))
				os.RemoveAll(dir)
			}
			lock.Close()
		}
	}
	os.Remove(filepath.Join(f.bundle, "scratch.img"))
	b, err := proto.Marshal(&taskAPI.DeleteResponse{ExitedAt: timestamppb.Now(), ExitStatus: 128 + uint32(syscall.SIGKILL)})
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(b)
	return err
}

// killVM kills the QEMU process the pidfile names, if it still is QEMU.
func killVM(pidfile string) {
	b, err := os.ReadFile(pidfile)
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil || !strings.HasPrefix(string(comm), "qemu") {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

// printInfo writes the runtime's RuntimeInfo (containerd 2.x's -info).
func printInfo(w io.Writer) error {
	feat, err := featuresAny()
	if err != nil {
		return err
	}
	b, err := proto.Marshal(&apitypes.RuntimeInfo{
		Features: feat,
		Name:     RuntimeName,
		Version:  &apitypes.RuntimeVersion{Version: shim.Version},
		// containerd 2.x hands the erofs snapshotter's mounts (erofs
		// layers, a mkfs'd writable image, mkdir/format templates) to
		// the shim instead of mounting them on the host.
		Annotations: map[string]string{"containerd.io/runtime-allow-mounts": "mkdir/*,format/*,erofs"},
	})
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
