package host

import (
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/uvmgcs/gcs/protocol"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err  error
		is   func(error) bool
		name string
	}{
		{&protocol.Error{Op: protocol.SignalProcess, Result: protocol.HrNotFound}, errdefs.IsNotFound, "NotFound"},
		{&protocol.Error{Result: protocol.HrVmcomputeSystemNotFound}, errdefs.IsNotFound, "NotFound"},
		{&protocol.Error{Result: protocol.HrVmcomputeSystemAlreadyExists}, errdefs.IsAlreadyExists, "AlreadyExists"},
		{&protocol.Error{Result: protocol.HrVmcomputeInvalidState}, errdefs.IsFailedPrecondition, "FailedPrecondition"},
		{&protocol.Error{Result: protocol.HrInvalidArg}, errdefs.IsInvalidArgument, "InvalidArgument"},
		{&protocol.Error{Result: protocol.HrNotImpl}, errdefs.IsNotImplemented, "NotImplemented"},
		{fmt.Errorf("guest connection: read: %w", net.ErrClosed), errdefs.IsUnavailable, "Unavailable"},
	} {
		err := Classify(fmt.Errorf("wrapped: %w", tc.err))
		if !tc.is(err) {
			t.Errorf("Classify(%v) is not %s", tc.err, tc.name)
		}
		if !errors.Is(err, tc.err) {
			t.Errorf("Classify(%v) lost the original", tc.err)
		}
		if Classify(err) != err {
			t.Errorf("Classify is not idempotent on %v", err)
		}
	}
	if Classify(nil) != nil {
		t.Error("Classify(nil) != nil")
	}
	plain := errors.New("plain")
	if Classify(plain) != plain {
		t.Error("an error of no class changed")
	}
}

func TestCgroupMetrics(t *testing.T) {
	m := CgroupMetrics(&protocol.Metrics{
		Pids: &protocol.PidsStat{Current: 3, Limit: 10},
		CPU:  &protocol.CPUStat{Usage: &protocol.CPUUsage{Total: 5, User: 3, Kernel: 2, PerCPU: []uint64{5}}},
		Memory: &protocol.MemoryStat{Cache: 7, RSS: 11, TotalInactiveFile: 12, Kernel: &protocol.MemoryEntry{Usage: 13},
			Usage: &protocol.MemoryEntry{Usage: 100, Limit: 200, Max: 150, Failcnt: 1}},
		Blkio:            &protocol.BlkIOStat{IoServicedRecursive: []protocol.BlkIOEntry{{Op: "Read", Major: 8, Value: 9}}},
		MemoryOomControl: &protocol.MemoryOomControl{OomKill: 2},
	})
	if m.Pids.Current != 3 || m.Pids.Limit != 10 || m.CPU.Usage.Total != 5 || m.CPU.Usage.PerCPU[0] != 5 ||
		m.Memory.Cache != 7 || m.Memory.Usage.Max != 150 || m.Memory.Usage.Failcnt != 1 ||
		m.Memory.RSS != 11 || m.Memory.TotalInactiveFile != 12 || m.Memory.Kernel.Usage != 13 || m.MemoryOomControl.OomKill != 2 ||
		m.Blkio.IoServicedRecursive[0].Value != 9 || m.Blkio.IoServicedRecursive[0].Major != 8 {
		t.Fatalf("converted %+v", m)
	}
	if e := CgroupMetrics(nil); e == nil || e.Memory != nil {
		t.Fatalf("nil metrics gave %+v", e)
	}
}
