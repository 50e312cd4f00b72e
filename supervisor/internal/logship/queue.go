// Package logship is the worker's log ship queue (spec §8.2, §8.3, I-15): a
// bounded, drop-oldest queue of log entries that lives across studio
// sessions, fed by an hclog sink so that shipping logs to the studio is one
// more sink of the one logger, not a second logging path.
//
// The studio session takes batches from the queue (each below a byte bound,
// so a batch always fits a frame) and, when a batch's send fails, puts it
// back at the front or drops it with a marker; a batch is never resent
// forever. Nothing in this package talks to the network.
package logship

import (
	"fmt"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

// DefaultCapacity is the spec's queue bound (§8.3).
const DefaultCapacity = 5000

// Bounds on what the queue holds, besides the spec's entry count. Each is
// far above what a healthy worker logs, and keeps a flood (a plugin that
// writes a 40 MiB line, or thousands of long ones) from costing the agent
// more than a few MiB or the studio more than it can read.
const (
	// MaxMessageBytes bounds one entry's message: longer ones are cut at
	// a character boundary and end with a marker saying how long they
	// were. 8 KiB holds any real log line, a stack trace's worth.
	MaxMessageBytes = 8 << 10
	// maxFieldBytes bounds an entry's category and jobId, which are
	// short in any honest entry.
	maxFieldBytes = 256
	// DefaultMaxBytes bounds the queue's entries together (4 MiB: 5000
	// entries of 800 bytes, far more than typical lines of about 200).
	DefaultMaxBytes = 4 << 20
	// MaxBatchTries is how many times a batch is sent before it is
	// dropped with a marker (a studio that refuses it without saying why
	// would otherwise get it again on every reconnect, forever).
	MaxBatchTries = 3
	// entryOverhead approximates the JSON around an entry's fields in a
	// logBatch frame, so that a batch's size estimate is an upper bound
	// for entries without characters JSON escapes.
	entryOverhead = 64
)

// Levels shipped to the studio (§8.2).
const (
	LevelInfo  = protocol.LevelInfo
	LevelWarn  = protocol.LevelWarn
	LevelError = protocol.LevelError
)

// CategoryLogs is the category of the queue's own markers.
const CategoryLogs = "logs"

// Entry is one shipped log line: the wire's LogEntry (§8.2), so a drained
// batch goes into a logBatch frame as it is.
type Entry = protocol.LogEntry

// Queue is a bounded FIFO of entries. When it is full (by entry count or by
// bytes) the oldest entries are dropped and one warn/logs marker entry at
// the front says how many ("ship queue full (5000 entries); dropped N
// oldest"); repeated drops update that one marker rather than adding more.
// The queue never holds more than its capacity, marker included.
//
// A Queue is safe for concurrent use. Create one with New.
type Queue struct {
	capacity int
	maxBytes int
	now      func() time.Time

	mu sync.Mutex // guards the fields below
	// items is oldest first. When dropped > 0, items[0] is the live drop
	// marker and counts dropped entries.
	items   []item
	bytes   int // sum of the items' sizes
	dropped int
	// fullBy says which bound made the live marker ("5000 entries").
	fullBy string
}

// item is a queued entry with how often it was sent without success.
type item struct {
	e     Entry
	size  int
	tries int
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

// WithMaxBytes sets the byte bound (default DefaultMaxBytes); it is raised
// to fit at least two entries of the largest size.
func WithMaxBytes(n int) Option {
	return func(q *Queue) {
		q.maxBytes = max(n, 2*(MaxMessageBytes+2*maxFieldBytes+entryOverhead+64))
	}
}

// WithClock sets the clock used for the markers' timestamps (default
// time.Now).
func WithClock(now func() time.Time) Option {
	return func(q *Queue) { q.now = now }
}

// New returns an empty queue.
func New(opts ...Option) *Queue {
	q := &Queue{capacity: DefaultCapacity, maxBytes: DefaultMaxBytes, now: time.Now}
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
	return len(q.items)
}

// Size estimates the bytes e takes in a logBatch frame.
func Size(e Entry) int {
	return len(e.Ts) + len(e.Level) + len(e.Category) + len(e.Message) + len(e.JobID) + entryOverhead
}

// Clip bounds e: the message to MaxMessageBytes plus a marker saying how
// long it was, the category and jobId to 256 bytes, each cut at a
// character boundary.
func Clip(e Entry) Entry {
	if len(e.Message) > MaxMessageBytes {
		e.Message = cut(e.Message, MaxMessageBytes) + fmt.Sprintf(" … [truncated: %d bytes]", len(e.Message))
	}
	e.Category = cut(e.Category, maxFieldBytes)
	e.JobID = cut(e.JobID, maxFieldBytes)
	return e
}

// cut returns s cut to at most n bytes at a UTF-8 character boundary.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Push appends e (clipped), dropping the oldest entries if the queue is
// full. It never blocks on anything but the queue's own lock.
func (q *Queue) Push(e Entry) {
	e = Clip(e)
	it := item{e: e, size: Size(e)}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.makeRoomLocked(1, it.size)
	q.items = append(q.items, it)
	q.bytes += it.size
}

// makeRoomLocked drops the oldest real entries until n more entries of
// size bytes in all fit both bounds, keeping (or creating) the marker at
// the front.
func (q *Queue) makeRoomLocked(n, size int) {
	for {
		byCount := len(q.items)+n > q.capacity
		byBytes := q.bytes+size > q.maxBytes
		if !byCount && !byBytes {
			return
		}
		if byCount {
			q.fullBy = fmt.Sprintf("%d entries", q.capacity)
		} else {
			q.fullBy = fmt.Sprintf("%d bytes", q.maxBytes)
		}
		if q.dropped == 0 {
			if len(q.items) == 0 {
				return
			}
			// No marker yet: the oldest entry makes way for it.
			q.bytes -= q.items[0].size
			q.items[0] = q.markerLocked(1)
			q.bytes += q.items[0].size
			q.dropped = 1
			continue
		}
		if len(q.items) < 2 {
			return // only the marker left
		}
		// Marker at [0]: the oldest real entry is [1]. Slide the marker
		// over it.
		q.dropped++
		q.bytes -= q.items[1].size
		q.items[1] = q.items[0]
		q.items[0] = item{}
		q.items = q.items[1:]
		q.bytes -= q.items[0].size
		q.items[0] = q.markerLocked(q.dropped)
		q.bytes += q.items[0].size
	}
}

func (q *Queue) markerLocked(n int) item {
	e := Entry{
		Ts:       protocol.FormatTimestamp(q.now()),
		Level:    LevelWarn,
		Category: CategoryLogs,
		Message:  fmt.Sprintf("ship queue full (%s); dropped %d oldest", q.fullBy, n),
	}
	return item{e: e, size: Size(e)}
}

// Drain removes and returns every queued entry, oldest first (nil when the
// queue is empty). The caller owns the returned slice.
func (q *Queue) Drain() []Entry {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := entries(q.items)
	q.items, q.bytes, q.dropped = nil, 0, 0
	return out
}

func entries(items []item) []Entry {
	if len(items) == 0 {
		return nil
	}
	out := make([]Entry, len(items))
	for i, it := range items {
		out[i] = it.e
	}
	return out
}

// Batch is entries taken from the queue for one logBatch frame.
type Batch struct {
	Entries []Entry
	// Bytes estimates the entries' size in the frame (see Size).
	Bytes int
	// tries is the most times any of the entries was sent before.
	tries []int
}

// Len returns the number of entries.
func (b Batch) Len() int { return len(b.Entries) }

// NextBatch removes and returns the oldest entries whose sizes add up to
// at most maxBytes (at least one entry, which is never larger than a
// clipped entry), or an empty batch when the queue is empty.
func (q *Queue) NextBatch(maxBytes int) Batch {
	q.mu.Lock()
	defer q.mu.Unlock()
	var b Batch
	n := 0
	for n < len(q.items) && (n == 0 || b.Bytes+q.items[n].size <= maxBytes) {
		b.Bytes += q.items[n].size
		n++
	}
	if n == 0 {
		return b
	}
	b.Entries = entries(q.items[:n])
	b.tries = make([]int, n)
	for i := range n {
		b.tries[i] = q.items[i].tries
	}
	clear(q.items[:n])
	q.items = q.items[n:]
	if len(q.items) == 0 {
		q.items = nil
	}
	q.bytes -= b.Bytes
	q.dropped = 0 // a live marker left with the batch
	return b
}

// Requeue puts a batch whose send failed back at the front of the queue,
// ahead of anything queued since it was taken (spec §8.3 LATER). Its
// entries that have now been sent MaxBatchTries times are dropped instead,
// with a marker. The bounds still hold: if the result is too long, the
// oldest entries go and a marker says so.
func (q *Queue) Requeue(b Batch) {
	if b.Len() == 0 {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	front := make([]item, 0, b.Len()+1)
	gaveUp := 0
	for i, e := range b.Entries {
		tries := 1
		if i < len(b.tries) {
			tries += b.tries[i]
		}
		if tries >= MaxBatchTries {
			gaveUp++
			continue
		}
		front = append(front, item{e: e, size: Size(e), tries: tries})
	}
	if gaveUp > 0 {
		front = append(front, q.noteLocked(fmt.Sprintf("dropped %d log entries the studio did not take in %d sends", gaveUp, MaxBatchTries)))
	}
	q.mergeFrontLocked(front)
}

// Drop discards a batch that must not be sent again (the studio refused
// it) and queues a marker that says so, with why.
func (q *Queue) Drop(b Batch, why string) {
	if b.Len() == 0 {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.mergeFrontLocked([]item{q.noteLocked(fmt.Sprintf("dropped a log batch of %d entries (%d bytes): %s", b.Len(), b.Bytes, why))})
}

// Note queues a warn/logs entry from the queue's owner (the session), at
// the front, so it goes out with the next batch.
func (q *Queue) Note(msg string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.mergeFrontLocked([]item{q.noteLocked(msg)})
}

func (q *Queue) noteLocked(msg string) item {
	e := Clip(Entry{Ts: protocol.FormatTimestamp(q.now()), Level: LevelWarn, Category: CategoryLogs, Message: msg})
	return item{e: e, size: Size(e)}
}

// mergeFrontLocked puts front ahead of the queued items and restores the
// bounds, dropping the oldest entries (of front first) with a marker.
func (q *Queue) mergeFrontLocked(front []item) {
	merged := append(front, q.items...)
	q.items, q.bytes = nil, 0
	// A marker that was live is now in the middle; it stays as a plain,
	// still-true entry.
	q.dropped = 0
	for _, it := range merged {
		q.bytes += it.size
	}
	q.items = merged
	q.makeRoomLocked(0, 0)
}
