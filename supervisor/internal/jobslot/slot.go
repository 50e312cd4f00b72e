// Package jobslot is the node's one job slot (spec §9.3, invariant I-10):
// a studio job and a local job (the local API's) never run at the same
// time, so two engines never load their models side by side and run the
// node out of memory.
//
// The studio session takes the slot with TryAcquire, which never waits
// (an offer while the slot is held is rejected busy, and the studio offers
// the job again later). A local request takes it with Acquire, which waits
// its turn in a bounded first-come queue; a full queue answers ErrQueueFull
// at once. A released slot goes straight to the first waiting request, so
// a studio that offers a new job the moment the last one is reported can
// never starve the local queue; while anyone waits, TryAcquire fails.
//
// The package knows nothing of the studio, the jobs or HTTP; the agent
// wires it into both sources.
package jobslot

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Source says who holds the slot.
type Source string

// The two sources of jobs.
const (
	Studio Source = "studio"
	Local  Source = "local"
)

// ErrQueueFull is Acquire's answer when Slot's queue already holds its
// maximum of waiting requests.
var ErrQueueFull = errors.New("jobslot: the job queue is full")

// Slot is the node's one job slot. Create it with New; every method may
// be called from any goroutine.
type Slot struct {
	maxWaiting int

	mu      sync.Mutex // guards all below
	holder  Source     // "" when free
	since   time.Time  // when holder took the slot
	waiters []*waiter  // first come first served
	waited  uint64     // requests that had to wait, since start
}

// waiter is one Acquire call waiting its turn; granted is closed when the
// slot is handed to it.
type waiter struct {
	src     Source
	granted chan struct{}
}

// New returns a free slot whose queue holds at most maxWaiting requests
// (0: none may wait; a held slot answers ErrQueueFull at once).
func New(maxWaiting int) *Slot {
	return &Slot{maxWaiting: max(maxWaiting, 0)}
}

// TryAcquire takes the slot for src if it is free and nobody waits for
// it, and reports whether it did. It never blocks.
func (s *Slot) TryAcquire(src Source) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.holder != "" || len(s.waiters) > 0 {
		return false
	}
	s.holder, s.since = src, time.Now()
	return true
}

// Acquire takes the slot for src, waiting in the queue while it is held.
// It returns ErrQueueFull at once when the queue is full, and ctx's error
// when ctx ends first (the request leaves the queue; a slot handed to it
// at that moment is released again). On nil the caller holds the slot and
// must call Release exactly once.
func (s *Slot) Acquire(ctx context.Context, src Source) error {
	s.mu.Lock()
	if s.holder == "" && len(s.waiters) == 0 {
		s.holder, s.since = src, time.Now()
		s.mu.Unlock()
		return nil
	}
	if len(s.waiters) >= s.maxWaiting {
		s.mu.Unlock()
		return ErrQueueFull
	}
	w := &waiter{src: src, granted: make(chan struct{})}
	s.waiters = append(s.waiters, w)
	s.waited++
	s.mu.Unlock()
	select {
	case <-w.granted:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	for i, o := range s.waiters {
		if o == w {
			s.waiters = append(s.waiters[:i], s.waiters[i+1:]...)
			s.mu.Unlock()
			return ctx.Err()
		}
	}
	s.mu.Unlock()
	// Not in the queue any more: the slot was handed to w as ctx ended.
	s.Release()
	return ctx.Err()
}

// Release frees the slot, or hands it to the first waiting request. Each
// successful TryAcquire or Acquire is released exactly once; a Release of
// a free slot is a programming error and panics.
func (s *Slot) Release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.holder == "" {
		panic("jobslot: Release of a free slot")
	}
	if len(s.waiters) == 0 {
		s.holder, s.since = "", time.Time{}
		return
	}
	w := s.waiters[0]
	s.waiters = s.waiters[1:]
	s.holder, s.since = w.src, time.Now()
	close(w.granted)
}

// State is the slot now, for the status page.
type State struct {
	// Holder is who holds the slot ("" when free), since Since.
	Holder Source
	Since  time.Time
	// Waiting is the number of requests in the queue, MaxWaiting its
	// bound.
	Waiting, MaxWaiting int
	// Waited counts the requests that had to wait, since start.
	Waited uint64
}

// State returns the slot's state now.
func (s *Slot) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return State{Holder: s.holder, Since: s.since, Waiting: len(s.waiters), MaxWaiting: s.maxWaiting, Waited: s.waited}
}
