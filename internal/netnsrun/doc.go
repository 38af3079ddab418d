// Package netnsrun runs a function inside a network namespace named by a
// path (a bind mount such as /var/run/netns/NAME, or /proc/PID/ns/net) on
// an OS thread of its own, so that what the function creates (sockets,
// taps, processes it forks, netlink objects) lands there while the rest of
// the process stays where it was.
package netnsrun
