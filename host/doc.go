// Package host is the host side of the bridge: a GuestConnection negotiates
// with a guest's gcs over any net.Conn and drives it; Process is a process
// the guest runs, its stdio as io streams. VM drivers and shims link it.
package host
