//go:build unix

package pathtrust

import (
	"io/fs"
	"syscall"
)

// Owner returns the uid owning the file fi describes; ok is false when fi
// does not say (off Unix, or a FileInfo that is not the system's).
func Owner(fi fs.FileInfo) (uid int, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}
