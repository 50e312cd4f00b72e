//go:build !unix

package models

import (
	"errors"
	"os"
)

type lockMode int

const (
	lockShared lockMode = iota
	lockExclusive
)

var errLockBusy = errors.New("lock busy")

// tryLock is a no-op where flock(2) is missing: only the in-process
// single-flight protects a download there.
func tryLock(f *os.File, mode lockMode) error { return nil }
