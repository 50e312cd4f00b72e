//go:build unix

package models

import (
	"errors"
	"os"
	"syscall"
)

// lockMode is the kind of flock(2) lock.
type lockMode int

const (
	lockShared    lockMode = syscall.LOCK_SH
	lockExclusive lockMode = syscall.LOCK_EX
)

// errLockBusy reports that another holder has a conflicting lock.
var errLockBusy = errors.New("lock busy")

// tryLock takes the lock on f without blocking, or returns errLockBusy.
// flock locks belong to the open file description, so two opens of one
// file conflict even within one process.
func tryLock(f *os.File, mode lockMode) error {
	for {
		err := syscall.Flock(int(f.Fd()), int(mode)|syscall.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EWOULDBLOCK):
			return errLockBusy
		default:
			return err
		}
	}
}
