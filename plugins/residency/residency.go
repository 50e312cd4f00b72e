// Package residency keeps the models an engine plugin has loaded in memory
// between jobs: a [Set] loads a model once, shares it among the jobs that
// use it, and evicts the least recently used idle models when the set
// outgrows its budget. Engine plugins import it (llamacpp-plugin,
// whisper-plugin, sdcpp-plugin); the supervisor does not.
//
// # Concurrency
//
// A Set is safe for concurrent use. Its lock is never held while a model
// loads or is freed:
//
//   - A load runs on the goroutine of the [Set.Acquire] that started it,
//     outside the lock, so [Set.Resident] and [Set.Unload] answer meanwhile.
//     At most one load of a key runs at a time: another Acquire of that key
//     waits for it and shares its value, or loads itself if it failed.
//   - The free function runs exactly once per loaded value, outside the
//     lock, on whichever goroutine makes the value unreachable: the Acquire
//     whose load evicted it, the last [Handle.Release] of a value unloaded
//     or evicted while in use, [Set.Unload] or [Set.Close].
//
// The set does not serialise jobs on one value: an engine whose loaded
// model holds per-job state (a llama.cpp or whisper.cpp context) keeps a
// mutex in its value type.
package residency

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stokerhq/stoker/plugins"
)

// ErrClosed is returned by [Set.Acquire] after [Set.Close].
var ErrClosed = errors.New("residency: set closed")

// Key names one resident value.
type Key struct {
	// Model is the studio model id (RunRequest.Model): what
	// [Set.Resident] reports and [Set.Unload] takes.
	Model string
	// Identity is whatever else shapes the loaded value, such as the model
	// file's path: the same Model with another Identity (a re-published
	// model) is another value.
	Identity string
}

// Options configure a [Set]. The zero value is a set without limits.
type Options struct {
	// Budget is the most bytes the resident values may hold together, as
	// their loads reported them (default 0: no limit).
	Budget uint64
	// MaxModels is the most values resident at once (default 0: no limit).
	MaxModels int
	// OneCopyPerModel makes a load replace the resident values of the
	// same Model with another Identity, instead of keeping them until they
	// are evicted (default false).
	OneCopyPerModel bool
	// Now is the clock of the last-use times (default time.Now).
	Now func() time.Time
	// Logger logs each eviction as "model evicted" (default: no logging).
	Logger hclog.Logger
}

// Set is a set of loaded values of type M, kept across jobs. Create one
// with [New]; the zero value is not usable.
type Set[M any] struct {
	free      func(M)
	now       func() time.Time
	log       hclog.Logger
	maxModels int
	oneCopy   bool

	loads atomic.Uint64 // successful loads

	mu      sync.Mutex // guards the fields below and the guarded fields of every entry and Handle
	budget  uint64
	entries map[Key]*entry[M]     // the resident values
	loading map[Key]chan struct{} // keys being loaded; closed when the load ends
	seq     uint64                // use counter: the last value of entry.used
	closed  bool
}

// entry is one loaded value.
type entry[M any] struct {
	key   Key
	value M
	bytes uint64

	// guarded by Set.mu
	refs     int       // handles not yet released
	gone     bool      // no longer resident: the last Release frees it
	used     uint64    // Set.seq at the last use; orders the LRU
	lastUsed time.Time // reported by Resident
}

// New returns an empty set whose values are freed by free.
func New[M any](free func(M), o Options) *Set[M] {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	return &Set[M]{
		free:      free,
		now:       o.Now,
		log:       o.Logger,
		maxModels: o.MaxModels,
		oneCopy:   o.OneCopyPerModel,
		budget:    o.Budget,
		entries:   map[Key]*entry[M]{},
		loading:   map[Key]chan struct{}{},
	}
}

// Handle is one use of a resident value, from [Set.Acquire] until
// [Handle.Release]. While any handle holds a value it is neither evicted
// nor freed.
type Handle[M any] struct {
	s *Set[M]
	e *entry[M]

	released bool // guarded by s.mu
}

// Value returns the value. It must not be used after Release.
func (h *Handle[M]) Value() M { return h.e.value }

// Release gives the value back, marking it used now. The last Release of a
// value that was unloaded or replaced meanwhile, or that was loaded after
// Close, frees it. Calling Release again does nothing.
func (h *Handle[M]) Release() {
	s, e := h.s, h.e
	s.mu.Lock()
	if h.released {
		s.mu.Unlock()
		return
	}
	h.released = true
	e.refs--
	s.useLocked(e)
	free := e.gone && e.refs == 0
	s.mu.Unlock()
	if free {
		s.free(e.value)
	}
}

// Acquire returns a handle on the value resident for key, loading it with
// load when it is absent; the caller must Release the handle. load returns
// the value and the bytes it holds, and runs on this goroutine with ctx.
//
// When another Acquire is loading key, Acquire waits for that load and
// shares its value; if that load fails, Acquire loads itself. Waiting ends
// early when ctx is done, with an error wrapping ctx.Err(). A value already
// resident is returned whatever the state of ctx. An error from load is
// returned as it is, and leaves nothing resident.
//
// After a load, the least recently used idle values are evicted until the
// set fits its Budget and MaxModels. Values in use are never evicted, so
// the set may stay over its limits until a later load; a single value
// larger than the Budget stays resident, alone.
//
// After Close, Acquire returns ErrClosed; a load in flight when Close is
// called hands its value to its caller, and the value is freed on Release.
func (s *Set[M]) Acquire(ctx context.Context, key Key, load func(ctx context.Context) (M, uint64, error)) (*Handle[M], error) {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, ErrClosed
		}
		if e := s.entries[key]; e != nil {
			e.refs++
			s.useLocked(e)
			s.mu.Unlock()
			return &Handle[M]{s: s, e: e}, nil
		}
		done, busy := s.loading[key]
		if !busy {
			done = make(chan struct{})
			s.loading[key] = done
			s.mu.Unlock()
			return s.load(ctx, key, done, load)
		}
		s.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return nil, fmt.Errorf("residency: waiting for model %s to load: %w", key.Model, ctx.Err())
		}
	}
}

// load runs load for key, whose done channel the caller registered, and
// makes the value resident.
func (s *Set[M]) load(ctx context.Context, key Key, done chan struct{}, load func(ctx context.Context) (M, uint64, error)) (*Handle[M], error) {
	v, n, err := load(ctx)
	s.mu.Lock()
	delete(s.loading, key)
	close(done)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	s.loads.Add(1)
	e := &entry[M]{key: key, value: v, bytes: n, refs: 1}
	s.useLocked(e)
	var replaced, evicted []*entry[M]
	if s.closed {
		e.gone = true
	} else {
		if s.oneCopy {
			replaced = s.removeLocked(func(k Key) bool { return k.Model == key.Model })
		}
		s.entries[key] = e
		evicted = s.evictLocked()
	}
	s.mu.Unlock()
	for _, old := range replaced {
		s.free(old.value)
	}
	for _, old := range evicted {
		s.log.Info("model evicted", "model", old.key.Model, "bytes", old.bytes)
		s.free(old.value)
	}
	return &Handle[M]{s: s, e: e}, nil
}

// useLocked marks e used now.
func (s *Set[M]) useLocked(e *entry[M]) {
	s.seq++
	e.used = s.seq
	e.lastUsed = s.now()
}

// evictLocked removes least recently used idle values until the set fits
// its limits, or no idle value is left, and returns them for the caller to
// free.
func (s *Set[M]) evictLocked() []*entry[M] {
	var out []*entry[M]
	for s.overLocked() {
		var lru *entry[M]
		for _, e := range s.entries {
			if e.refs == 0 && (lru == nil || e.used < lru.used) {
				lru = e
			}
		}
		if lru == nil {
			break
		}
		delete(s.entries, lru.key)
		lru.gone = true
		out = append(out, lru)
	}
	return out
}

// overLocked reports whether the resident values exceed MaxModels or the
// budget.
func (s *Set[M]) overLocked() bool {
	if s.maxModels > 0 && len(s.entries) > s.maxModels {
		return true
	}
	if s.budget == 0 {
		return false
	}
	var total uint64
	for _, e := range s.entries {
		total += e.bytes
	}
	return total > s.budget
}

// removeLocked removes the resident values whose key matches, and returns
// the idle ones for the caller to free; the others are freed by their last
// Release.
func (s *Set[M]) removeLocked(match func(Key) bool) []*entry[M] {
	var idle []*entry[M]
	for k, e := range s.entries {
		if !match(k) {
			continue
		}
		delete(s.entries, k)
		e.gone = true
		if e.refs == 0 {
			idle = append(idle, e)
		}
	}
	return idle
}

// Resident lists the resident values, most recently used first. A value
// being loaded is not listed until its load ends.
func (s *Set[M]) Resident() []plugins.ResidentModel {
	s.mu.Lock()
	es := make([]*entry[M], 0, len(s.entries))
	for _, e := range s.entries {
		es = append(es, e)
	}
	slices.SortFunc(es, func(a, b *entry[M]) int { return cmp.Compare(b.used, a.used) })
	out := make([]plugins.ResidentModel, len(es))
	for i, e := range es {
		out[i] = plugins.ResidentModel{Model: e.key.Model, Bytes: e.bytes, LastUsedUnixMs: e.lastUsed.UnixMilli()}
	}
	s.mu.Unlock()
	return out
}

// Unload removes every resident value of model, whatever its Identity, and
// frees the idle ones before it returns; a value in use is freed by its last
// Release. Unloading a model that is not resident does nothing. A load of
// model in flight is not affected: its value becomes resident when it ends.
func (s *Set[M]) Unload(model string) {
	s.mu.Lock()
	idle := s.removeLocked(func(k Key) bool { return k.Model == model })
	s.mu.Unlock()
	for _, e := range idle {
		s.free(e.value)
	}
}

// Close removes every value and frees the idle ones before it returns; a
// value in use is freed by its last Release. Later Acquires return
// ErrClosed. Close may be called more than once.
func (s *Set[M]) Close() {
	s.mu.Lock()
	s.closed = true
	idle := s.removeLocked(func(Key) bool { return true })
	s.mu.Unlock()
	for _, e := range idle {
		s.free(e.value)
	}
}

// Loads returns how many loads have succeeded since New (for tests and
// logs: five jobs on one model load it once).
func (s *Set[M]) Loads() uint64 { return s.loads.Load() }

// SetBudget changes the Budget. It evicts nothing itself: the new budget
// applies from the next load on.
func (s *Set[M]) SetBudget(bytes uint64) {
	s.mu.Lock()
	s.budget = bytes
	s.mu.Unlock()
}
