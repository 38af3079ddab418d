package containerd

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"
)

// shimClient connects to the shim serving task id, as containerd does,
// through the address the shim wrote in the task's bundle.
func (d *daemon) shimClient(t *testing.T, id string) taskAPI.TTRPCTaskService {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(d.dir, "state", "io.containerd.runtime.v2.task", namespace, id, "address"))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("unix", strings.TrimPrefix(strings.TrimSpace(string(b)), "unix://"))
	if err != nil {
		t.Fatal(err)
	}
	c := ttrpc.NewClient(conn)
	t.Cleanup(func() { c.Close() })
	return taskAPI.NewTTRPCTaskClient(c)
}

// TestTaskAPIDirect calls what ctr does not reach: Update (the new memory
// limit is the container's cgroup's in the VM, as its metrics show), Checkpoint (not
// implemented), Connect (the VM's pid), Kill of an exited task (NotFound),
// bad input (InvalidArgument).
func TestTaskAPIDirect(t *testing.T) {
	forEach(t, func(t *testing.T, d *daemon) {
		ctx := context.Background()
		id := "direct-" + d.id()
		d.runDetached(t, id)
		c := d.shimClient(t, id)

		res, _ := json.Marshal(specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(48 << 20))}})
		if _, err := c.Update(ctx, &taskAPI.UpdateTaskRequest{ID: id, Resources: &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources", Value: res}}); err != nil {
			t.Fatalf("Update: %v", err)
		}
		out, err := d.ctrOK(ctx, "task", "metrics", id)
		if err != nil || !regexp.MustCompile(`memory.limit_in_bytes\s+50331648\b`).MatchString(out) {
			t.Fatalf("metrics after Update: %v\n%s\nwant memory.limit_in_bytes 50331648", err, out)
		}

		_, err = c.Checkpoint(ctx, &taskAPI.CheckpointTaskRequest{ID: id, Path: t.TempDir()})
		if !errdefs.IsNotImplemented(errgrpc.ToNative(err)) {
			t.Fatalf("Checkpoint: %v, want NotImplemented", err)
		}
		conn, err := c.Connect(ctx, &taskAPI.ConnectRequest{ID: id})
		if err != nil {
			t.Fatal(err)
		}
		if _, pid := d.taskStatus(t, id); pid != itoa(conn.TaskPid) || conn.ShimPid == 0 {
			t.Fatalf("Connect: task pid %d, shim pid %d; ctr shows pid %s", conn.TaskPid, conn.ShimPid, pid)
		}
		if _, err := c.Kill(ctx, &taskAPI.KillRequest{ID: id, Signal: 1000}); !errdefs.IsInvalidArgument(errgrpc.ToNative(err)) {
			t.Fatalf("Kill with signal 1000: %v, want InvalidArgument", err)
		}
		if _, err := c.State(ctx, &taskAPI.StateRequest{ID: "no-such-task"}); !errdefs.IsNotFound(errgrpc.ToNative(err)) {
			t.Fatalf("State of an unknown task: %v, want NotFound", err)
		}
		if _, err := d.ctrOK(ctx, "task", "kill", "-s", "SIGKILL", id); err != nil {
			t.Fatal(err)
		}
		w, err := c.Wait(ctx, &taskAPI.WaitRequest{ID: id})
		if err != nil || w.ExitStatus != 137 {
			t.Fatalf("Wait: %v %v, want exit 137", w, err)
		}
		if _, err := c.Kill(ctx, &taskAPI.KillRequest{ID: id, Signal: 9}); !errdefs.IsNotFound(errgrpc.ToNative(err)) {
			t.Fatalf("Kill of an exited task: %v, want NotFound", err)
		}
	})
}

func ptr[T any](v T) *T { return &v }

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }
