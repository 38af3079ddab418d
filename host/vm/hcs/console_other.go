//go:build !windows

package hcs

import (
	"errors"
	"fmt"
	"io"
)

// serveConsole needs Windows' named pipes.
func serveConsole(io.Writer) (string, func(), error) {
	return "", nil, fmt.Errorf("console pipe: %w", errors.ErrUnsupported)
}
