// Package host is the host side of the bridge: a GuestConnection
// negotiates with a guest's gcs over any net.Conn (Accept takes one from a
// listener) and drives it; Container and Process are the guest's
// containers and processes, their stdio as io streams. A connection holds
// one Container per id, publishes exits and OOM kills to any number of
// watchers (Events), converts statistics to containerd's cgroup v1
// Metrics, and returns errors that match github.com/containerd/errdefs.
// It logs through github.com/containerd/log's context logger. host/uvm
// builds on it to own a VM's resources; shims link both.
package host
