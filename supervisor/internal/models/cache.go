package models

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Entry is one file in the cache.
type Entry struct {
	Model    string // the cache directory (sanitised model id); "" for a legacy flat file
	Name     string // file name, ".part" included for a partial download
	Path     string
	Size     int64
	LastUsed time.Time
	Partial  bool // an unfinished download
	Legacy   bool // a flat <Root>/<name> file: listed, reused, never removed by the store
	InUse    bool // leased by a job or being downloaded, in any process
}

// List returns every file in the cache, sorted by model then name. It takes
// no lock that a download or a lease would wait on for more than an
// instant.
func (s *Store) List() ([]Entry, error) {
	ents, err := s.scan()
	if err != nil {
		return nil, fmt.Errorf("models.List: %w", err)
	}
	for i := range ents {
		e := &ents[i]
		if e.Legacy {
			continue
		}
		lf, err := tryLockPath(s.entryLock(*e), lockExclusive)
		if errors.Is(err, errLockBusy) {
			e.InUse = true
		} else if lf != nil {
			lf.Close()
		}
	}
	return ents, nil
}

// scan walks Root: files in model directories and legacy flat files. Hidden
// names (the store's own .stoker) are skipped.
func (s *Store) scan() ([]Entry, error) {
	top, err := os.ReadDir(s.root)
	if err != nil {
		return nil, err
	}
	var ents []Entry
	for _, d := range top {
		if strings.HasPrefix(d.Name(), ".") {
			continue
		}
		p := filepath.Join(s.root, d.Name())
		if d.IsDir() {
			files, err := os.ReadDir(p)
			if err != nil {
				return nil, err
			}
			for _, f := range files {
				if e, ok := entryOf(filepath.Join(p, f.Name()), d.Name(), f); ok {
					ents = append(ents, e)
				}
			}
			continue
		}
		if e, ok := entryOf(p, "", d); ok {
			e.Legacy = true
			ents = append(ents, e)
		}
	}
	sort.Slice(ents, func(i, j int) bool {
		if ents[i].Model != ents[j].Model {
			return ents[i].Model < ents[j].Model
		}
		return ents[i].Name < ents[j].Name
	})
	return ents, nil
}

func entryOf(p, model string, d os.DirEntry) (Entry, bool) {
	if !d.Type().IsRegular() {
		return Entry{}, false
	}
	fi, err := d.Info()
	if err != nil {
		return Entry{}, false // removed meanwhile
	}
	return Entry{
		Model:    model,
		Name:     d.Name(),
		Path:     p,
		Size:     fi.Size(),
		LastUsed: lastUsed(fi),
		Partial:  strings.HasSuffix(d.Name(), partSuffix),
	}, true
}

// entryLock returns the lock guarding e (a .part shares its file's lock).
func (s *Store) entryLock(e Entry) string {
	return s.lockPath(e.Model, strings.TrimSuffix(e.Name, partSuffix))
}

// PruneOptions says what Prune removes. Both rules may be combined; with
// neither, Prune removes nothing.
type PruneOptions struct {
	// OlderThan removes files not used for longer than this (0: no age
	// rule).
	OlderThan time.Duration
	// MaxBytes then removes least recently used files until the cache holds
	// at most this many bytes (0: no size rule).
	MaxBytes int64
	// Now is the time OlderThan counts from (default time.Now()).
	Now time.Time
}

// Prune removes cache files by age and then to a size, least recently used
// first, and returns what it removed. It never removes a file in use (a
// lease or a download, in any process) nor a legacy flat file.
func (s *Store) Prune(opts PruneOptions) ([]Entry, error) {
	if opts.OlderThan < 0 || opts.MaxBytes < 0 {
		return nil, errors.New("models.Prune: negative option")
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	ents, err := s.scan()
	if err != nil {
		return nil, fmt.Errorf("models.Prune: %w", err)
	}
	var removed []Entry
	var keep []Entry
	for _, e := range ents {
		if !e.Legacy && opts.OlderThan > 0 && opts.Now.Sub(e.LastUsed) > opts.OlderThan && s.tryRemove(e) {
			removed = append(removed, e)
			continue
		}
		keep = append(keep, e)
	}
	if opts.MaxBytes > 0 {
		removed = append(removed, s.shrink(keep, opts.MaxBytes)...)
	}
	return removed, nil
}

// evict applies Config.MaxBytes, making room for need more bytes. Failures
// are logged: eviction is housekeeping and must not fail a job.
func (s *Store) evict(need int64) {
	ents, err := s.scan()
	if err != nil {
		s.log.Warn("cannot scan the cache for eviction", "error", err)
		return
	}
	limit := s.cfg.MaxBytes - need
	if limit < 0 {
		limit = 0
	}
	for _, e := range s.shrink(ents, limit) {
		s.log.Info("evicted least recently used model file", "model", e.Model, "file", e.Name,
			"bytes", e.Size, "last_used", e.LastUsed)
	}
}

// shrink removes files of ents, least recently used first, until the
// non-legacy ones total at most limit bytes or nothing removable is left.
func (s *Store) shrink(ents []Entry, limit int64) []Entry {
	var total int64
	var cands []Entry
	for _, e := range ents {
		if e.Legacy {
			continue
		}
		total += e.Size
		cands = append(cands, e)
	}
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].LastUsed.Before(cands[j].LastUsed) })
	var removed []Entry
	for _, e := range cands {
		if total <= limit {
			break
		}
		if s.tryRemove(e) {
			total -= e.Size
			removed = append(removed, e)
		}
	}
	return removed
}

// tryRemove removes e unless someone holds its lock.
func (s *Store) tryRemove(e Entry) bool {
	lf, err := tryLockPath(s.entryLock(e), lockExclusive)
	if err != nil {
		return false // busy, or unreadable: leave it
	}
	if lf != nil {
		defer lf.Close()
	}
	if err := s.removeFile(e.Path); err != nil {
		s.log.Warn("cannot remove cache file", "path", e.Path, "error", err)
		return false
	}
	return true
}
