package models

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// lockPath returns the lock file guarding <Root>/<dir>/<name> and its .part.
// Lock files live apart from the data and are never removed: removing a
// lock file another process has open would split the lock in two.
func (s *Store) lockPath(dir, name string) string {
	return filepath.Join(s.root, metaDir, "locks", dir, name+".lock")
}

// lock opens the lock file at p and takes mode on it, polling until ctx is
// done (flock(2) cannot be interrupted by a context). Closing the returned
// file releases the lock.
func (s *Store) lock(ctx context.Context, p string, mode lockMode) (*os.File, error) {
	if _, err := s.safeDir(s.rel(filepath.Dir(p))); err != nil {
		return nil, err
	}
	f, err := s.openOwn(p)
	if err != nil {
		return nil, err
	}
	wait := 5 * time.Millisecond
	var timer *time.Timer
	for logged := false; ; {
		err := tryLock(f, mode)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, errLockBusy) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", p, err)
		}
		if !logged && mode == lockExclusive {
			// Also the event tests wait on.
			s.log.Info("waiting for another process to finish the file", "lock", p)
			logged = true
		}
		if timer == nil {
			timer = time.NewTimer(wait)
			defer timer.Stop()
		} else {
			timer.Reset(wait)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-timer.C:
		}
		wait = min(2*wait, 250*time.Millisecond)
	}
}

// tryLockPath takes mode on the lock file at p without blocking and without
// creating it. It returns (nil, errLockBusy) when the lock is held and
// (nil, nil) when there is no lock file, hence no holder; a lock path that
// is a symlink or not a regular file is an error (the caller leaves the
// file it guards alone).
func tryLockPath(p string, mode lockMode) (*os.File, error) {
	f, _, err := openRegular(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if err := tryLock(f, mode); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
