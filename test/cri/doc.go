// Package cri tests pods through containerd's CRI plugin the way a
// Kubernetes node runs them: containerd (Debian's 1.6) started by the test
// inside a network namespace the test creates, with a private root, state,
// socket, CNI configuration (bridge, host-local, portmap, loopback from
// /usr/lib/cni) and runtime handlers runc (io.containerd.runc.v2) and
// uvmgcs (io.containerd.uvmgcs.v1); images the test builds itself; crictl
// and critest (make cri-tools) as the clients. README.md lists what runs,
// what is skipped and why.
package cri
