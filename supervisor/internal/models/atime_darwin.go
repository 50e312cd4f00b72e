package models

import (
	"os"
	"syscall"
	"time"
)

// lastUsed returns a file's last-used time: its access time, which the store
// sets on every use.
func lastUsed(fi os.FileInfo) time.Time {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return time.Unix(st.Atimespec.Unix())
	}
	return fi.ModTime()
}
