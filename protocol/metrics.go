package protocol

// Metrics is Properties.LCOWMetrics: a container's cgroup statistics in the
// JSON shape of containerd's cgroup v1 metrics, which hcsshim hosts decode.
type Metrics struct {
	Pids             *PidsStat         `json:"pids,omitempty"`
	CPU              *CPUStat          `json:"cpu,omitempty"`
	Memory           *MemoryStat       `json:"memory,omitempty"`
	Blkio            *BlkIOStat        `json:"blkio,omitempty"`
	MemoryOomControl *MemoryOomControl `json:"memory_oom_control,omitempty"`
}

// MemoryOomControl counts the OOM killer's kills in a container's cgroup.
type MemoryOomControl struct {
	OomKill uint64 `json:"oom_kill,omitempty"`
}

// PidsStat counts a container's tasks.
type PidsStat struct {
	Current uint64 `json:"current,omitempty"`
	Limit   uint64 `json:"limit,omitempty"`
}

// CPUStat is a container's CPU time, in nanoseconds.
type CPUStat struct {
	Usage      *CPUUsage  `json:"usage,omitempty"`
	Throttling *Throttled `json:"throttling,omitempty"`
}

// CPUUsage is CPU time in nanoseconds.
type CPUUsage struct {
	Total  uint64   `json:"total,omitempty"`
	Kernel uint64   `json:"kernel,omitempty"`
	User   uint64   `json:"user,omitempty"`
	PerCPU []uint64 `json:"per_cpu,omitempty"`
}

// Throttled is CFS throttling.
type Throttled struct {
	Periods          uint64 `json:"periods,omitempty"`
	ThrottledPeriods uint64 `json:"throttled_periods,omitempty"`
	ThrottledTime    uint64 `json:"throttled_time,omitempty"`
}

// MemoryStat is a container's memory use, in bytes.
// Field names are those of containerd's cgroup v1 Metrics (which
// hcsshim's host decodes); under cgroup v2 they carry memory.stat's
// equivalents (anon for rss, file_mapped for mapped_file).
type MemoryStat struct {
	Cache             uint64       `json:"cache,omitempty"`
	RSS               uint64       `json:"rss,omitempty"`
	MappedFile        uint64       `json:"mapped_file,omitempty"`
	PgFault           uint64       `json:"pg_fault,omitempty"`
	PgMajFault        uint64       `json:"pg_maj_fault,omitempty"`
	InactiveFile      uint64       `json:"inactive_file,omitempty"`
	ActiveFile        uint64       `json:"active_file,omitempty"`
	TotalInactiveFile uint64       `json:"total_inactive_file,omitempty"`
	Usage             *MemoryEntry `json:"usage,omitempty"`
	Swap              *MemoryEntry `json:"swap,omitempty"`
	Kernel            *MemoryEntry `json:"kernel,omitempty"`
}

// MemoryEntry is one memory counter with its limit.
type MemoryEntry struct {
	Limit   uint64 `json:"limit,omitempty"`
	Usage   uint64 `json:"usage,omitempty"`
	Max     uint64 `json:"max,omitempty"`
	Failcnt uint64 `json:"failcnt,omitempty"`
}

// BlkIOStat is a container's block I/O.
type BlkIOStat struct {
	IoServiceBytesRecursive []BlkIOEntry `json:"io_service_bytes_recursive,omitempty"`
	IoServicedRecursive     []BlkIOEntry `json:"io_serviced_recursive,omitempty"`
}

// BlkIOEntry is one device's counter for one operation.
type BlkIOEntry struct {
	Op    string `json:"op,omitempty"`
	Major uint64 `json:"major,omitempty"`
	Minor uint64 `json:"minor,omitempty"`
	Value uint64 `json:"value,omitempty"`
}

// ExitInfo is ContainerNotificationMessage.ResultInfo for an exit (an
// extension: sent as a JSON string holding this object, so a host that
// types ResultInfo as a string or as any value decodes it).
type ExitInfo struct {
	ExitCode  int  `json:"ExitCode"`
	OOMKilled bool `json:"OOMKilled,omitempty"`
}
