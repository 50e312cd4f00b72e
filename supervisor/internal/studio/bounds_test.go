package studio

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

// peakGoroutines samples runtime.NumGoroutine until stop is called and
// returns the highest count seen.
func peakGoroutines() (stop func() int) {
	var peak atomic.Int64
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			if n := int64(runtime.NumGoroutine()); n > peak.Load() {
				peak.Store(n)
			}
			select {
			case <-quit:
				return
			case <-t.C:
			}
		}
	}()
	return func() int {
		close(quit)
		<-done
		return int(peak.Load())
	}
}

// TestRejectFloodIsBounded floods a paused worker with offers while the
// studio reads nothing: every refusal must go through one bounded path, not
// a goroutine each blocked on the socket, and the worker must serve a job
// right after.
func TestRejectFloodIsBounded(t *testing.T) {
	st := newTestStudio(t)
	w := startWorker(t, st, func(c *Config) { c.WriteTimeout = time.Minute })
	// Paused, and Admit refuses the flood too: the worker may be unpaused
	// (below) before it has read the last flood offer.
	w.runner.admit = func(c *protocol.JobOfferClaim) error {
		if strings.HasPrefix(c.JobID, "flood-") {
			return errors.New("not this one")
		}
		return nil
	}
	w.c.SetPaused(true)
	sc := st.accept(t)
	sc.welcome(t)
	nextOf[protocol.Heartbeat](t, sc)
	release := sc.holdReads()
	defer release()
	base := runtime.NumGoroutine()
	stop := peakGoroutines()
	start := time.Now()
	// 20,000 rejects of 1 KiB each: far more than the socket buffers
	// hold, so the worker's writer is soon behind.
	const n = 20000
	pad := strings.Repeat("x", 1<<10)
	for i := range n {
		sc.send(t, offer(fmt.Sprintf("flood-%d-%s", i, pad)))
	}
	// The offers are read in order: once the worker answers this one, it
	// has handled the whole flood.
	w.c.SetPaused(false)
	sc.send(t, offer("good"))
	release()
	rejects := 0
	for {
		f := sc.next(t)
		if a, ok := f.(protocol.Accept); ok {
			if a.JobID != "good" {
				t.Fatalf("accept for %q, want good", a.JobID)
			}
			break
		}
		if _, ok := f.(protocol.Reject); ok {
			rejects++
		}
	}
	peak := stop()
	elapsed := time.Since(start)
	t.Logf("%d offers refused: %d rejects reached the studio; goroutines %d before, %d at the peak", n, rejects, base, peak)
	if peak > base+50 {
		t.Errorf("goroutines peaked at %d (from %d) while refusing %d offers, want at most %d", peak, base, n, base+50)
	}
	if got := waitFor(t, w.runner.started, "RunJob"); got != "good" {
		t.Errorf("ran %q, want good", got)
	}
	st2 := w.c.Status()
	if st2.OffersRefused != n || uint64(rejects)+st2.RejectsDropped+st2.RejectsCoalesced != n {
		t.Errorf("refused %d, dropped %d, coalesced %d, received %d; want %d refused, each reject received or dropped",
			st2.OffersRefused, st2.RejectsDropped, st2.RejectsCoalesced, rejects, n)
	}
	// The refusals' log lines are rate-limited (two kinds of line here:
	// paused, and not admitted once unpaused), and say how many were held
	// back.
	logs := w.logs.String()
	windows := int(elapsed/logWindow) + 2
	if lines := strings.Count(logs, "rejecting offer"); lines > 2*logBurst*windows {
		t.Errorf("%d lines for %d refused offers in %v, want at most %d", lines, n, elapsed, 2*logBurst*windows)
	}
	if !strings.Contains(logs, "suppressed_similar=") {
		t.Error("no line says how many were held back")
	}
}

func TestRejectQueue(t *testing.T) {
	q := newRejectQueue()
	if got := q.push(protocol.Reject{JobID: "a", Reason: "busy"}); got != rejectQueued {
		t.Fatalf("first push = %v, want queued", got)
	}
	if got := q.push(protocol.Reject{JobID: "a", Reason: "busy"}); got != rejectCoalesced {
		t.Errorf("same job again = %v, want coalesced", got)
	}
	for i := 1; i < maxPendingRejects; i++ {
		if got := q.push(protocol.Reject{JobID: fmt.Sprint(i)}); got != rejectQueued {
			t.Fatalf("push %d = %v, want queued", i, got)
		}
	}
	if got := q.push(protocol.Reject{JobID: "one too many"}); got != rejectDropped {
		t.Errorf("push over the count bound = %v, want dropped", got)
	}
	if r, _ := q.pop(); r.JobID != "a" {
		t.Errorf("pop = %q, want the oldest, a", r.JobID)
	}
	if got := q.push(protocol.Reject{JobID: strings.Repeat("x", maxPendingRejectBytes)}); got != rejectDropped {
		t.Errorf("push over the byte bound = %v, want dropped", got)
	}
	if got := q.push(protocol.Reject{JobID: "a"}); got != rejectQueued {
		t.Errorf("a again once sent = %v, want queued", got)
	}
	for q.len() > 0 {
		q.pop()
	}
	if q.bytes != 0 || len(q.ids) != 0 {
		t.Errorf("empty queue holds %d bytes, %d ids", q.bytes, len(q.ids))
	}
}

func TestLogLimit(t *testing.T) {
	now := time.Unix(0, 0)
	l := newLogLimit(func() time.Time { return now })
	for i := range logBurst {
		if ok, n := l.allow("x"); !ok || n != 0 {
			t.Fatalf("line %d: allow = %v, %d; want true, 0", i, ok, n)
		}
	}
	for range 5 {
		if ok, _ := l.allow("x"); ok {
			t.Fatal("line over the burst let through")
		}
	}
	if ok, _ := l.allow("y"); !ok {
		t.Error("another kind of line held back")
	}
	now = now.Add(logWindow)
	if ok, n := l.allow("x"); !ok || n != 5 {
		t.Errorf("first line of the next window: allow = %v, %d; want true, 5", ok, n)
	}
	if ok, n := l.allow("x"); !ok || n != 0 {
		t.Errorf("second line: allow = %v, %d; want true, 0", ok, n)
	}
}
