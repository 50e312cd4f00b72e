//go:build unix

package models

import (
	"errors"
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
