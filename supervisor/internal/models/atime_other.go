//go:build !linux && !darwin

package models

import (
	"os"
	"time"
)

// lastUsed falls back to the modification time where the access time is
// not at hand.
func lastUsed(fi os.FileInfo) time.Time { return fi.ModTime() }
