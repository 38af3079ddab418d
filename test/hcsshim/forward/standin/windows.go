//go:build ignore

// Package windows stands in, on Linux, for the three names of
// golang.org/x/sys/windows that hcsshim's host-side bridge and internal/cmd
// use: Errno (an HRESULT or Win32 error as an error), WSAECONNABORTED and
// EscapeArg. The copy's imports of golang.org/x/sys/windows in those files
// are pointed here.
package windows

import "fmt"

// Errno is a Windows error code or HRESULT.
type Errno uintptr

// Error names the code; Windows would look up its message text.
func (e Errno) Error() string { return fmt.Sprintf("HRESULT 0x%08x", uint32(e)) }

// WSAECONNABORTED is Winsock's "connection aborted" (10053).
const WSAECONNABORTED Errno = 10053

// EscapeArg escapes s as x/sys/windows does for a Windows command line.
func EscapeArg(s string) string {
	if len(s) == 0 {
		return `""`
	}
	n := len(s)
	hasSpace := false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"', '\\':
			n++
		case ' ', '\t':
			hasSpace = true
		}
	}
	if hasSpace {
		n += 2
	}
	if n == len(s) {
		return s
	}
	qs := make([]byte, n)
	j := 0
	if hasSpace {
		qs[j] = '"'
		j++
	}
	slashes := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		default:
			slashes = 0
			qs[j] = s[i]
		case '\\':
			slashes++
			qs[j] = s[i]
		case '"':
			for ; slashes > 0; slashes-- {
				qs[j] = '\\'
				j++
			}
			qs[j] = '\\'
			j++
			qs[j] = s[i]
		}
		j++
	}
	if hasSpace {
		for ; slashes > 0; slashes-- {
			qs[j] = '\\'
			j++
		}
		qs[j] = '"'
		j++
	}
	return string(qs[:j])
}
