// Package logship is the worker's log ship queue (spec §8.2, §8.3, I-15): a
// bounded, drop-oldest queue of log entries that lives across studio
// sessions, fed by an hclog sink so that shipping logs to the studio is one
// more sink of the one logger, not a second logging path.
//
// The studio session drains the queue into logBatch frames and puts a batch
// back at the front when its send fails. Nothing in this package talks to
// the network.
package logship

import (
	"fmt"
	"sync"
	"time"

	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

// DefaultCapacity is the spec's queue bound (§8.3).
const DefaultCapacity = 5000

// Levels shipped to the studio (§8.2).
const (
	LevelInfo  = protocol.LevelInfo
	LevelWarn  = protocol.LevelWarn
	LevelError = protocol.LevelError
)

// CategoryLogs is the category of the queue's own drop marker.
const CategoryLogs = "logs"

// Entry is one shipped log line: the wire's LogEntry (§8.2), so a drained
// batch goes into a logBatch frame as it is.
type Entry = protocol.LogEntry

// Queue is a bounded FIFO of entries. When it is full the oldest entries
// are dropped and one warn/logs marker entry at the front says how many
// ("ship queue full (5000 entries); dropped N oldest"); repeated drops
// update that one marker rather than adding more. The queue never holds
// more than its capacity, marker included.
//
// A Queue is safe for concurrent use. Create one with New.
type Queue struct {
	capacity int
	now      func() time.Time

	mu sync.Mutex // guards the fields below
	// entries is oldest first. When dropped > 0, entries[0] is the live
	// drop marker and counts dropped entries.
	entries []Entry
	dropped int
}

// Option configures a Queue.
type Option func(*Queue)

// WithCapacity sets the bound (default 5000, minimum 2: one entry and the
// marker).
func WithCapacity(n int) Option {
	return func(q *Queue) {
		if n < 2 {
			n = 2
		}
		q.capacity = n
	}
}

// WithClock sets the clock used for the drop marker's timestamp (default
// time.Now).
func WithClock(now func() time.Time) Option {
	return func(q *Queue) { q.now = now }
}

// New returns an empty queue.
func New(opts ...Option) *Queue {
	q := &Queue{capacity: DefaultCapacity, now: time.Now}
	for _, o := range opts {
		o(q)
	}
	return q
}

// Capacity returns the bound.
func (q *Queue) Capacity() int { return q.capacity }

// Len returns the number of queued entries, marker included.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.entries)
}

// Push appends e, dropping the oldest entries if the queue is full. It
// never blocks on anything but the queue's own lock.
func (q *Queue) Push(e Entry) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.entries) >= q.capacity {
		q.makeRoomLocked()
	}
	q.entries = append(q.entries, e)
}

// makeRoomLocked frees one slot by dropping the oldest real entry, keeping
// (or creating) the marker at the front.
func (q *Queue) makeRoomLocked() {
	if q.dropped == 0 {
		// No marker yet: drop the two oldest entries, one for the new
		// entry's slot and one for the marker's, and put the marker where
		// the second one was.
		q.entries[1] = q.markerLocked(2)
		q.entries = q.entries[1:]
		q.dropped = 2
		return
	}
	// Marker at [0]: the oldest real entry is [1]. Slide the marker over it.
	q.dropped++
	q.entries[1] = q.entries[0]
	q.entries = q.entries[1:]
	q.entries[0].Message = q.markerMessage(q.dropped)
}

func (q *Queue) markerLocked(n int) Entry {
	return Entry{
		Ts:       protocol.FormatTimestamp(q.now()),
		Level:    LevelWarn,
		Category: CategoryLogs,
		Message:  q.markerMessage(n),
	}
}

func (q *Queue) markerMessage(n int) string {
	return fmt.Sprintf("ship queue full (%d entries); dropped %d oldest", q.capacity, n)
}

// Drain removes and returns every queued entry, oldest first (nil when the
// queue is empty). The caller owns the returned slice.
func (q *Queue) Drain() []Entry {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.entries
	q.entries = nil
	q.dropped = 0
	return out
}

// Requeue puts a batch that could not be sent back at the front of the
// queue, ahead of anything queued since it was drained (spec §8.3 LATER).
// The bound still holds: if the result is too long, the oldest entries go
// and a marker says so. front is not retained.
func (q *Queue) Requeue(front []Entry) {
	if len(front) == 0 {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	merged := make([]Entry, 0, len(front)+len(q.entries))
	merged = append(merged, front...)
	merged = append(merged, q.entries...)
	// A marker that was live is now in the middle; it stays as a plain,
	// still-true entry.
	q.dropped = 0
	if len(merged) <= q.capacity {
		q.entries = merged
		return
	}
	drop := len(merged) - q.capacity + 1 // +1 for the marker's slot
	merged[drop-1] = q.markerLocked(drop)
	q.entries = merged[drop-1:]
	q.dropped = drop
}
