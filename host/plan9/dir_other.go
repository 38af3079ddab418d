//go:build !linux

package plan9

import (
	"fmt"
	"runtime"

	"errors"
	"github.com/hugelgupf/p9/p9"
)

// export is a host directory; serving one needs Linux's *at calls.
type export struct{}

func openExport(dir string, readOnly bool) (*export, error) {
	return nil, fmt.Errorf("export %s: serving a directory over 9p on %s: %w", dir, runtime.GOOS, errors.ErrUnsupported)
}

func (e *export) close() {}

func (e *export) attach() (p9.File, error) { return nil, errors.ErrUnsupported }
