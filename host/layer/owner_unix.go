//go:build !windows

package layer

import (
	"io/fs"
	"syscall"
)

// owner is a file's uid and gid.
func owner(info fs.FileInfo) (uid, gid uint32) {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return st.Uid, st.Gid
	}
	return 0, 0
}
