//go:build ignore

package jobobject

// GroupAffinity is the Win32 GROUP_AFFINITY structure, as in jobobject.go:
// the only name of this package that internal/cow and internal/gcs use
// (in Container.SetCPUGroupAffinities' signature).
type GroupAffinity struct {
	Mask  uint64
	Group uint16
}
