//go:build !windows

package hcs

import (
	"errors"
	"fmt"
)

// systemAPI has no vmcompute.dll to bind off Windows.
func systemAPI() (api, error) {
	return nil, fmt.Errorf("hcs: vmcompute.dll exists only on Windows: %w", errors.ErrUnsupported)
}
