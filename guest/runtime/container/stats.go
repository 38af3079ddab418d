package container

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer"

	"github.com/uvmgcs/gcs/protocol"
)

// Properties answers GetProperties: the process list and cgroup statistics.
func (m *Manager) Properties(ctx context.Context, id string, q protocol.PropertyQuery) (*protocol.Properties, error) {
	c, err := m.get(id)
	if err != nil {
		return nil, err
	}
	var props protocol.Properties
	var lc *libcontainer.Container
	if slices.ContainsFunc(q.PropertyTypes, func(t string) bool {
		return t == protocol.PropertyTypeProcessList || t == protocol.PropertyTypeStatistics
	}) {
		if lc, err = c.lc(); err != nil {
			return nil, err
		}
	}
	for _, t := range q.PropertyTypes {
		switch t {
		case protocol.PropertyTypeProcessList:
			pids, err := lc.Processes()
			if err != nil {
				return nil, fmt.Errorf("list processes: %w", err)
			}
			props.ProcessList = make([]protocol.ProcessDetails, 0, len(pids))
			for _, pid := range pids {
				props.ProcessList = append(props.ProcessList, protocol.ProcessDetails{ProcessID: uint32(pid)})
			}
		case protocol.PropertyTypeStatistics:
			st, err := lc.Stats()
			if err != nil {
				return nil, fmt.Errorf("statistics: %w", err)
			}
			mt := metrics(st.CgroupStats)
			mt.MemoryOomControl = &protocol.MemoryOomControl{OomKill: c.oomKills()}
			b, err := json.Marshal(mt)
			if err != nil {
				return nil, err
			}
			props.LCOWMetrics = b
		case protocol.PropertyTypeUvmgcsState:
			st := c.describe()
			props.UvmgcsState = &st
		default:
			return nil, fmt.Errorf("property type %q: %w", t, protocol.HrNotImpl)
		}
	}
	return &props, nil
}

// List describes every container.
func (m *Manager) List(ctx context.Context) []protocol.ContainerState {
	cs := m.snapshot()
	out := make([]protocol.ContainerState, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.describe())
	}
	slices.SortFunc(out, func(a, b protocol.ContainerState) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// describe reports the container's state as runc would.
func (c *Container) describe() protocol.ContainerState {
	c.mu.Lock()
	st := protocol.ContainerState{ID: c.id, Bundle: c.dir, Rootfs: c.rootfs}
	switch c.state {
	case created:
		st.Status = protocol.StatusCreated
	case running:
		st.Status, st.Pid = protocol.StatusRunning, c.init.pid
	case stopped:
		st.Status = protocol.StatusStopped
		select {
		case <-c.init.done:
			st.ExitCode = c.init.code
		default:
		}
	}
	c.mu.Unlock()
	if st.Status == protocol.StatusRunning {
		if c.paused() {
			st.Status = protocol.StatusPaused
		}
	}
	return st
}

func metrics(s *cgroups.Stats) *protocol.Metrics {
	if s == nil {
		return &protocol.Metrics{}
	}
	cpu := s.CpuStats
	mem := s.MemoryStats
	out := &protocol.Metrics{
		Pids: &protocol.PidsStat{Current: s.PidsStats.Current, Limit: s.PidsStats.Limit},
		CPU: &protocol.CPUStat{
			Usage: &protocol.CPUUsage{
				Total: cpu.CpuUsage.TotalUsage, Kernel: cpu.CpuUsage.UsageInKernelmode,
				User: cpu.CpuUsage.UsageInUsermode, PerCPU: cpu.CpuUsage.PercpuUsage,
			},
			Throttling: &protocol.Throttled{
				Periods: cpu.ThrottlingData.Periods, ThrottledPeriods: cpu.ThrottlingData.ThrottledPeriods,
				ThrottledTime: cpu.ThrottlingData.ThrottledTime,
			},
		},
		Memory: memoryStat(mem),
		Blkio: &protocol.BlkIOStat{
			IoServiceBytesRecursive: blkio(s.BlkioStats.IoServiceBytesRecursive),
			IoServicedRecursive:     blkio(s.BlkioStats.IoServicedRecursive),
		},
	}
	return out
}

// memoryStat is mem in cgroup v1's terms: memory.stat's keys of v1, or
// their v2 equivalents (anon, file_mapped, kernel).
func memoryStat(mem cgroups.MemoryStats) *protocol.MemoryStat {
	key := func(names ...string) uint64 {
		for _, n := range names {
			if v, ok := mem.Stats[n]; ok {
				return v
			}
		}
		return 0
	}
	out := &protocol.MemoryStat{
		Cache:             mem.Cache,
		RSS:               key("rss", "anon"),
		MappedFile:        key("mapped_file", "file_mapped"),
		PgFault:           key("pgfault"),
		PgMajFault:        key("pgmajfault"),
		InactiveFile:      key("inactive_file"),
		ActiveFile:        key("active_file"),
		TotalInactiveFile: key("total_inactive_file", "inactive_file"),
		Usage:             &protocol.MemoryEntry{Limit: mem.Usage.Limit, Usage: mem.Usage.Usage, Max: mem.Usage.MaxUsage, Failcnt: mem.Usage.Failcnt},
		Swap:              &protocol.MemoryEntry{Limit: mem.SwapUsage.Limit, Usage: mem.SwapUsage.Usage, Max: mem.SwapUsage.MaxUsage, Failcnt: mem.SwapUsage.Failcnt},
		Kernel:            &protocol.MemoryEntry{Limit: mem.KernelUsage.Limit, Usage: mem.KernelUsage.Usage, Max: mem.KernelUsage.MaxUsage, Failcnt: mem.KernelUsage.Failcnt},
	}
	if out.Kernel.Usage == 0 {
		out.Kernel.Usage = key("kernel") // v2
	}
	return out
}

func blkio(es []cgroups.BlkioStatEntry) []protocol.BlkIOEntry {
	out := make([]protocol.BlkIOEntry, 0, len(es))
	for _, e := range es {
		out = append(out, protocol.BlkIOEntry{Op: e.Op, Major: e.Major, Minor: e.Minor, Value: e.Value})
	}
	return out
}

// oomKilled reports whether the OOM killer killed in the container's
// cgroup.
func (c *Container) oomKilled() bool { return c.oomKills() > 0 }

// oomKills reads the cgroup's OOM-kill counter: memory.events (v2) or
// memory.oom_control (v1).
func (c *Container) oomKills() uint64 {
	lc, err := c.lc()
	if err != nil {
		return 0
	}
	st, err := lc.State()
	if err != nil {
		return 0
	}
	for key, dir := range st.CgroupPaths {
		if key != "memory" && key != "" {
			continue
		}
		for _, f := range []string{"memory.events", "memory.oom_control"} {
			b, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil {
				continue
			}
			for _, line := range strings.Split(string(b), "\n") {
				k, v, ok := strings.Cut(line, " ")
				if ok && k == "oom_kill" {
					if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
						return n
					}
				}
			}
		}
	}
	return 0
}
