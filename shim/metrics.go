package shim

import (
	"github.com/containerd/cgroups/v3/cgroup1/stats"

	"github.com/uvmgcs/gcs/protocol"
)

// cgroupMetrics converts the guest's statistics to the cgroup v1 Metrics
// containerd's clients decode (ctr task metrics, CRI stats).
func cgroupMetrics(m *protocol.Metrics) *stats.Metrics {
	out := &stats.Metrics{}
	if m.Pids != nil {
		out.Pids = &stats.PidsStat{Current: m.Pids.Current, Limit: m.Pids.Limit}
	}
	if m.CPU != nil {
		out.CPU = &stats.CPUStat{}
		if u := m.CPU.Usage; u != nil {
			out.CPU.Usage = &stats.CPUUsage{Total: u.Total, Kernel: u.Kernel, User: u.User, PerCPU: u.PerCPU}
		}
		if t := m.CPU.Throttling; t != nil {
			out.CPU.Throttling = &stats.Throttle{Periods: t.Periods, ThrottledPeriods: t.ThrottledPeriods, ThrottledTime: t.ThrottledTime}
		}
	}
	if m.Memory != nil {
		out.Memory = &stats.MemoryStat{Cache: m.Memory.Cache, Usage: memoryEntry(m.Memory.Usage), Swap: memoryEntry(m.Memory.Swap)}
	}
	if m.Blkio != nil {
		out.Blkio = &stats.BlkIOStat{
			IoServiceBytesRecursive: blkioEntries(m.Blkio.IoServiceBytesRecursive),
			IoServicedRecursive:     blkioEntries(m.Blkio.IoServicedRecursive),
		}
	}
	return out
}

func memoryEntry(e *protocol.MemoryEntry) *stats.MemoryEntry {
	if e == nil {
		return nil
	}
	return &stats.MemoryEntry{Limit: e.Limit, Usage: e.Usage, Max: e.Max, Failcnt: e.Failcnt}
}

func blkioEntries(es []protocol.BlkIOEntry) []*stats.BlkIOEntry {
	out := make([]*stats.BlkIOEntry, 0, len(es))
	for _, e := range es {
		out = append(out, &stats.BlkIOEntry{Op: e.Op, Major: e.Major, Minor: e.Minor, Value: e.Value})
	}
	return out
}
