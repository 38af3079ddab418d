package host

import (
	"context"

	"github.com/containerd/cgroups/v3/cgroup1/stats"

	"github.com/uvmgcs/gcs/protocol"
)

// Stats returns the container's statistics as containerd's cgroup v1
// Metrics (what a shim's Stats call and `ctr task metrics` carry).
func (c *Container) Stats(ctx context.Context) (*stats.Metrics, error) {
	_, m, err := c.Properties(ctx, protocol.PropertyTypeStatistics)
	if err != nil {
		return nil, err
	}
	return CgroupMetrics(m), nil
}

// CgroupMetrics converts the guest's statistics to containerd's cgroup v1
// Metrics; nil gives empty Metrics.
func CgroupMetrics(m *protocol.Metrics) *stats.Metrics {
	out := &stats.Metrics{}
	if m == nil {
		return out
	}
	if p := m.Pids; p != nil {
		out.Pids = &stats.PidsStat{Current: p.Current, Limit: p.Limit}
	}
	if c := m.CPU; c != nil {
		out.CPU = &stats.CPUStat{}
		if u := c.Usage; u != nil {
			out.CPU.Usage = &stats.CPUUsage{Total: u.Total, Kernel: u.Kernel, User: u.User, PerCPU: u.PerCPU}
		}
		if t := c.Throttling; t != nil {
			out.CPU.Throttling = &stats.Throttle{Periods: t.Periods, ThrottledPeriods: t.ThrottledPeriods, ThrottledTime: t.ThrottledTime}
		}
	}
	if mem := m.Memory; mem != nil {
		out.Memory = &stats.MemoryStat{
			Cache: mem.Cache, RSS: mem.RSS, MappedFile: mem.MappedFile, PgFault: mem.PgFault, PgMajFault: mem.PgMajFault,
			InactiveFile: mem.InactiveFile, ActiveFile: mem.ActiveFile, TotalInactiveFile: mem.TotalInactiveFile,
			Usage: memEntry(mem.Usage), Swap: memEntry(mem.Swap), Kernel: memEntry(mem.Kernel),
		}
	}
	if o := m.MemoryOomControl; o != nil {
		out.MemoryOomControl = &stats.MemoryOomControl{OomKill: o.OomKill}
	}
	if b := m.Blkio; b != nil {
		out.Blkio = &stats.BlkIOStat{
			IoServiceBytesRecursive: blkio(b.IoServiceBytesRecursive),
			IoServicedRecursive:     blkio(b.IoServicedRecursive),
		}
	}
	return out
}

func memEntry(e *protocol.MemoryEntry) *stats.MemoryEntry {
	if e == nil {
		return nil
	}
	return &stats.MemoryEntry{Limit: e.Limit, Usage: e.Usage, Max: e.Max, Failcnt: e.Failcnt}
}

func blkio(es []protocol.BlkIOEntry) []*stats.BlkIOEntry {
	out := make([]*stats.BlkIOEntry, 0, len(es))
	for _, e := range es {
		out = append(out, &stats.BlkIOEntry{Op: e.Op, Major: e.Major, Minor: e.Minor, Value: e.Value})
	}
	return out
}
