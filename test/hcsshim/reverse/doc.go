// Package reverse is the reverse conformance suite: hcsshim's own guest
// agent (cmd/gcs of github.com/Microsoft/hcsshim, taken from the Go module
// proxy at a pinned version and built at test time from a patched copy) runs
// on this host and uvmgcs's host library (host/) drives it through the
// requests an hcsshim LCOW host sends. README.md lists the adaptations and
// the result of every request.
package reverse
