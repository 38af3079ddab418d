//go:build ignore

package cmd

import (
	"context"
	"errors"
	"net/url"
	"time"
)

// NewNpipeIO stands in for the named-pipe constructor (io_npipe.go, which
// stays Windows-only): NewUpstreamIO, ExecInUvm and ExecInShimHost name it,
// the conformance suite never calls them.
func NewNpipeIO(context.Context, string, string, string, bool, time.Duration) (UpstreamIO, error) {
	return nil, errors.New("named pipes are Windows-only")
}

// NewBinaryIO stands in for the binary-logger constructor (io_binary.go,
// Windows-only: it listens on a named pipe).
func NewBinaryIO(context.Context, string, *url.URL) (UpstreamIO, error) {
	return nil, errors.New("binary logging IO is Windows-only")
}
