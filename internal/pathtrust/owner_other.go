//go:build !unix

package pathtrust

import "io/fs"

// Owner returns the uid owning the file fi describes; off Unix there is
// none, and ok is false.
func Owner(fs.FileInfo) (uid int, ok bool) { return 0, false }
