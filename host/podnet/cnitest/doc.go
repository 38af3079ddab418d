// Package cnitest gives tests real pod networks made the way containerd's
// CRI plugin makes them: Debian's CNI plugins (bridge with host-local
// IPAM, portmap, loopback) run through libcni against network namespaces
// the test creates. A namespace of the test's stands in for the host (the
// bridge, the iptables rules), so the host's own network is never touched.
// Everything is removed when the test ends.
package cnitest
