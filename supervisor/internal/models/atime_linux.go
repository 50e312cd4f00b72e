package models

import (
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// lastUsed returns a file's last-used time: its access time, which the store
// sets on every use.
func lastUsed(fi os.FileInfo) time.Time {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return time.Unix(st.Atim.Unix())
	}
	return fi.ModTime()
}

// setAtimeNow sets p's access time to now, leaving its modification time
// (which the verification record keys on) alone, and does not follow a
// symlink at p.
func setAtimeNow(p string) error {
	ts := []unix.Timespec{unix.NsecToTimespec(time.Now().UnixNano()), {Nsec: unix.UTIME_OMIT}}
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
}
