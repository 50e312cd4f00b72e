//go:build unix

package models

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

const (
	// oNoFollow makes an open fail on a symlink in the last component.
	oNoFollow = syscall.O_NOFOLLOW
	// oNonBlock keeps an open for reading from hanging on a FIFO planted
	// where a regular file was expected.
	oNonBlock = syscall.O_NONBLOCK
)

// isSymlinkErr reports whether err is an open with oNoFollow refused
// because the path is a symlink (ELOOP; EMLINK on some BSDs).
func isSymlinkErr(err error) bool {
	return errors.Is(err, syscall.ELOOP) || errors.Is(err, syscall.EMLINK)
}

// linkCount returns the number of hard links to the file fi describes.
func linkCount(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Nlink)
	}
	return 1
}

// dirRisk says why a user other than root and euid could change what is
// at a path whose Lstat is (uid, mode): "" when none can. target is the
// directory the store writes into itself; an entry above it may be a
// sticky directory (like /tmp), where others may create names but may not
// rename or remove ours. A symlink's own mode bits mean nothing; its
// owner does (in a sticky directory, only its owner may replace it).
func dirRisk(uid uint32, mode os.FileMode, target bool, euid int) string {
	if uid != 0 && int(uid) != euid {
		return fmt.Sprintf("owned by uid %d", uid)
	}
	switch {
	case mode&os.ModeSymlink != 0:
		return ""
	case !mode.IsDir():
		return "not a directory"
	case mode.Perm()&0o022 == 0:
		return ""
	case !target && mode&os.ModeSticky != 0:
		return ""
	}
	return fmt.Sprintf("writable by group or others (mode %s)", mode)
}

// statRisk is dirRisk for a FileInfo.
func statRisk(fi os.FileInfo, target bool) string {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	return dirRisk(st.Uid, fi.Mode(), target, os.Geteuid())
}
