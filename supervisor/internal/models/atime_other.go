//go:build !linux && !darwin

package models

import (
	"os"
	"time"
)

// lastUsed falls back to the modification time where the access time is
// not at hand.
func lastUsed(fi os.FileInfo) time.Time { return fi.ModTime() }

// setAtimeNow sets p's access time to now, leaving its modification time
// alone. Here it follows a symlink at p.
func setAtimeNow(p string) error { return os.Chtimes(p, time.Now(), time.Time{}) }
