package studio

import (
	"fmt"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

// Refusals of offers go through one bounded path: the dispatcher puts each
// reject in the session's rejectQueue and one goroutine, the reject pump,
// writes them. Nothing is started per offer, so a studio that offers faster
// than it reads the answers costs a bounded amount of memory.
//
// When the queue is full the writer is behind (the studio is not reading),
// and a further reject is dropped. The spec allows it: a reject has no ack
// and is fire-and-forget; a failed reject send is only a local log event
// (§4.1.4, §4.4, R9), and a reject that is never written is, to the studio,
// a reject lost in transit. The studio keeps the claim until its offer
// times out or the socket closes, then requeues the job (§5.2 step 8, §7.2)
// — as it would have on a busy/paused reject, only later. A real studio
// holds at most one offer per worker at a time, so only a studio that
// floods offers ever sees a reject dropped. A reject for a job id that is
// already waiting is coalesced into that one: the studio releases a claim
// once, and ignores a reject for a job it does not hold.
//
// The order of §9.5 is unchanged: paused, then busy, then the claim, then
// Admit decide, in that order and at once, for each offer as it is read;
// only the writing of the reject is queued. A dropped reject costs the job
// the studio's offer timeout (and, for a busy/paused one, nothing more: the
// studio would have requeued it without an attempt anyway); whether the
// timeout counts an attempt is the studio's policy.
//
// Bounds (the reasons for each value):
const (
	// maxPendingRejects: a legitimate studio has one offer out per worker.
	// 1024 absorbs a burst from a studio that does read (the writer is a
	// little slower than the reader under a burst) for about 100 KiB;
	// only a studio that stops reading loses rejects.
	maxPendingRejects = 1024
	// maxPendingRejectBytes bounds the job ids held (a job id is a free
	// string, and a hostile one can be as large as a frame).
	maxPendingRejectBytes = 1 << 20
)

type pushResult int

const (
	rejectQueued pushResult = iota
	rejectCoalesced
	rejectDropped
)

// rejectQueue is the bounded FIFO of rejects waiting for the socket. It is
// safe for concurrent use; wake has one slot, so repeated pokes collapse.
type rejectQueue struct {
	wake chan struct{}

	mu      sync.Mutex // guards the fields below
	pending []protocol.Reject
	ids     map[string]struct{} // job ids in pending
	bytes   int                 // bytes of the job ids and reasons in pending
}

func newRejectQueue() *rejectQueue {
	return &rejectQueue{wake: make(chan struct{}, 1), ids: map[string]struct{}{}}
}

func rejectBytes(r protocol.Reject) int { return len(r.JobID) + len(r.Reason) }

// push queues r unless a reject for the same job is already waiting
// (coalesced) or the queue is full (dropped). It never blocks.
func (q *rejectQueue) push(r protocol.Reject) pushResult {
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.ids[r.JobID]; ok {
		return rejectCoalesced
	}
	if len(q.pending) >= maxPendingRejects || q.bytes+rejectBytes(r) > maxPendingRejectBytes {
		return rejectDropped
	}
	q.pending = append(q.pending, r)
	q.ids[r.JobID] = struct{}{}
	q.bytes += rejectBytes(r)
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return rejectQueued
}

// pop removes the oldest reject.
func (q *rejectQueue) pop() (protocol.Reject, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.pending) == 0 {
		return protocol.Reject{}, false
	}
	r := q.pending[0]
	q.pending[0] = protocol.Reject{}
	q.pending = q.pending[1:]
	if len(q.pending) == 0 {
		q.pending = nil // let the backing array go
	}
	delete(q.ids, r.JobID)
	q.bytes -= rejectBytes(r)
	return r, true
}

// len returns the number of rejects waiting.
func (q *rejectQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending)
}

// reject refuses an offer through the session's reject queue (R9): it never
// blocks and starts nothing.
func (s *session) reject(jobID, reason string, code protocol.RejectCode) {
	c := s.c
	c.refused.Add(1)
	switch s.rejects.push(protocol.Reject{JobID: jobID, Reason: reason, Code: code}) {
	case rejectCoalesced:
		c.rejectsCoalesced.Add(1)
	case rejectDropped:
		n := c.rejectsDropped.Add(1)
		s.limited("reject-dropped").Warn("studio reads slower than it offers; reject dropped (the studio requeues the job when its offer times out)",
			"job", clipLog(jobID), "dropped_total", n)
	}
}

// rejectPump writes queued rejects until the session ends or a write
// fails. Rejects still queued then are lost with the socket; the studio
// releases those claims when the socket closes (§7.2).
func (s *session) rejectPump() {
	defer s.wg.Done()
	for {
		select {
		case <-s.done:
			return
		case <-s.rejects.wake:
		}
		for {
			r, ok := s.rejects.pop()
			if !ok {
				break
			}
			if err := s.send(r); err != nil {
				s.limited("reject-send").Error("reject send failed", "job", clipLog(r.JobID), "error", err)
				return
			}
		}
	}
}

// Log lines that a studio can provoke once per frame are rate-limited: at
// most logBurst lines per logWindow for each kind of line, and the first
// line after a window in which some were held back says how many.
const (
	logWindow = time.Second
	logBurst  = 10
)

// logLimit is the rate limiter of those lines. It is a pure object (no
// goroutine); now is injectable for tests.
type logLimit struct {
	now func() time.Time

	mu    sync.Mutex // guards lines
	lines map[string]*lineCount
}

type lineCount struct {
	start      time.Time // of the current window
	n          int       // lines let through in it
	suppressed int       // lines held back since the last one let through
}

func newLogLimit(now func() time.Time) *logLimit {
	return &logLimit{now: now, lines: map[string]*lineCount{}}
}

// allow reports whether a line of this kind may be logged now and, if so,
// how many were held back before it. The set of kinds is fixed by the code,
// so the map stays small.
func (l *logLimit) allow(kind string) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	c := l.lines[kind]
	if c == nil {
		c = &lineCount{start: now}
		l.lines[kind] = c
	}
	if now.Sub(c.start) >= logWindow {
		c.start, c.n = now, 0
	}
	if c.n >= logBurst {
		c.suppressed++
		return false, 0
	}
	c.n++
	suppressed, c.suppressed = c.suppressed, 0
	return true, suppressed
}

// maxLogValue bounds a studio-given string (a job id, a game, an asset) in
// the session's log lines: an honest one is short, and a hostile one (as
// large as a frame) would be copied into every line and every sink.
const maxLogValue = 256

// clipLog cuts s for a log line, saying how long it was.
func clipLog(s string) string {
	if len(s) <= maxLogValue {
		return s
	}
	n := maxLogValue
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return fmt.Sprintf("%s…(%d bytes)", s[:n], len(s))
}
