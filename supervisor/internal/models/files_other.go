//go:build !unix

package models

import "os"

// Where there is no O_NOFOLLOW, no owner and no mode bits to go by, the
// checks of files_unix.go have nothing to check.
const (
	oNoFollow = 0
	oNonBlock = 0
)

func isSymlinkErr(err error) bool { return false }

func linkCount(fi os.FileInfo) uint64 { return 1 }

func statRisk(fi os.FileInfo, target bool) string { return "" }
