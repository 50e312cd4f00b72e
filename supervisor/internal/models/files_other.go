//go:build !unix

package models

import "os"

// Where there is no O_NOFOLLOW there is nothing to refuse a link with.
const (
	oNoFollow = 0
	oNonBlock = 0
)

func isSymlinkErr(err error) bool { return false }

func linkCount(fi os.FileInfo) uint64 { return 1 }
