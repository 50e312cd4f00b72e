package studio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/stokerhq/stoker/supervisor/internal/devstudio"
	"github.com/stokerhq/stoker/supervisor/internal/logship"
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
	// The worker has handled every offer: the counts are final. The
	// rejects it wrote after the accept are still on their way.
	st2 := w.c.Status()
	for uint64(rejects)+st2.RejectsDropped+st2.RejectsCoalesced < n {
		if _, ok := sc.next(t).(protocol.Reject); ok {
			rejects++
		}
	}
	if peak > base+50 {
		t.Errorf("goroutines peaked at %d (from %d) while refusing %d offers, want at most %d", peak, base, n, base+50)
	}
	if got := waitFor(t, w.runner.started, "RunJob"); got != "good" {
		t.Errorf("ran %q, want good", got)
	}
	t.Logf("%d offers refused in %v: %d rejects reached the studio, %d dropped; goroutines %d before, %d at the peak",
		n, elapsed, rejects, st2.RejectsDropped, base, peak)
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

// devWorkerLogs waits until the dev studio holds a log entry of worker id
// for which match is true, or the worker has been welcomed maxSessions
// times (a reconnect loop), and returns the entry and the session count.
func devWorkerLogs(t *testing.T, ds *devstudio.Server, id string, maxSessions int, match func(protocol.LogEntry) bool) (protocol.LogEntry, int) {
	t.Helper()
	var found protocol.LogEntry
	v, err := ds.WaitWorker(ctxLimit(t), id, func(v devstudio.WorkerView) bool {
		logs, _ := ds.WorkerLogs(id)
		for _, e := range logs {
			if match(e) {
				found = e
				return true
			}
		}
		return v.Sessions >= maxSessions
	})
	if err != nil {
		t.Fatal(err)
	}
	return found, v.Sessions
}

// TestHugeLogLineIsNotResentForever ships a 20 MiB log line to a dev studio
// that refuses frames over 16 MiB (close 1009): the line must reach the
// studio truncated, with a marker, and the session must not be lost to it
// (before: the batch was requeued and resent on every reconnect, forever).
func TestHugeLogLineIsNotResentForever(t *testing.T) {
	ds := newDevStudio(t, devstudio.Config{})
	id, token, err := ds.AddWorker("w-logs")
	if err != nil {
		t.Fatal(err)
	}
	q := logship.New()
	q.Push(entryText("huge " + strings.Repeat("x", 20<<20)))
	q.Push(entryText("sentinel"))
	runDevWorker(t, ds, id, token, &devRunner{}, func(c *Config) {
		c.Logs = q
		c.LogFlushInterval = 10 * time.Millisecond
	})
	e, sessions := devWorkerLogs(t, ds, id, 4, func(e protocol.LogEntry) bool { return e.Message == "sentinel" })
	if e.Message != "sentinel" || sessions != 1 {
		t.Fatalf("the studio got the line after it: %v, in %d sessions; want it in one session", e.Message == "sentinel", sessions)
	}
	logs, _ := ds.WorkerLogs(id)
	for _, e := range logs {
		if strings.HasPrefix(e.Message, "huge ") {
			if len(e.Message) > 8<<10+100 || !strings.Contains(e.Message, "[truncated") {
				t.Errorf("the huge line arrived as %d bytes ending %q, want it truncated with a marker", len(e.Message), e.Message[max(0, len(e.Message)-60):])
			}
			return
		}
	}
	t.Error("the huge line never arrived, not even truncated")
}

// TestLogBatchRefusedAsTooLargeIsDropped: a studio whose frame limit is
// below one (already truncated) entry closes the session with 1009; the
// batch is dropped with a marker in the next session, never sent again.
func TestLogBatchRefusedAsTooLargeIsDropped(t *testing.T) {
	ds := newDevStudio(t, devstudio.Config{MaxFrameBytes: 4 << 10})
	id, token, err := ds.AddWorker("w-1009")
	if err != nil {
		t.Fatal(err)
	}
	q := logship.New()
	q.Push(entryText("big " + strings.Repeat("y", 6<<10)))
	runDevWorker(t, ds, id, token, &devRunner{}, func(c *Config) {
		c.Logs = q
		c.LogFlushInterval = 10 * time.Millisecond
	})
	e, sessions := devWorkerLogs(t, ds, id, 4, func(e protocol.LogEntry) bool {
		return e.Category == logship.CategoryLogs && strings.Contains(e.Message, "1009")
	})
	if e.Message == "" || sessions != 2 {
		t.Fatalf("marker %q after %d sessions; want a marker in the second session", e.Message, sessions)
	}
	q.Push(entryText("sentinel"))
	if e, sessions := devWorkerLogs(t, ds, id, 3, func(e protocol.LogEntry) bool { return e.Message == "sentinel" }); e.Message != "sentinel" || sessions != 2 {
		t.Fatalf("sentinel arrived %v in %d sessions, want in the second session (the batch never resent)", e.Message == "sentinel", sessions)
	}
}

// TestCompleteJSONOverFrameLimit: a JSON result whose frame is over the
// send limit is not sent (the studio would close with 1009 and the job
// would fail as "worker disconnected" on every node); CompleteJSON says so
// and the session stays up, so the job can be failed for good.
func TestCompleteJSONOverFrameLimit(t *testing.T) {
	ds := newDevStudio(t, devstudio.Config{MaxAttempts: 1})
	id, token, err := ds.AddWorker("w-json")
	if err != nil {
		t.Fatal(err)
	}
	r := &devRunner{override: map[string]func(context.Context, *protocol.JobOfferClaim, Reporter){}, errs: make(chan error, 4)}
	big := json.RawMessage(`{"text":"` + strings.Repeat("z", 17<<20) + `"}`)
	var sendErr error
	r.set("job-1", func(ctx context.Context, c *protocol.JobOfferClaim, rep Reporter) {
		sendErr = rep.CompleteJSON(ctx, big, c.Task.Prompt())
		if sendErr != nil {
			rep.Fail(ctx, sendErr.Error(), false)
		}
	})
	runDevWorker(t, ds, id, token, r, nil)
	jobID, err := ds.Submit("synthetic-llm", json.RawMessage(`{"kind":"llm","messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	v, err := ds.WaitJob(ctxLimit(t), jobID, func(v devstudio.JobView) bool { return v.Status.Done() })
	if err != nil {
		t.Fatal(err)
	}
	if sendErr == nil || v.Status != devstudio.JobFailed || v.Retryable || !strings.Contains(v.Error, "frame") {
		t.Errorf("CompleteJSON = %v; job %s retryable=%v %q; want an error, and the job failed for good naming the frame limit", sendErr, v.Status, v.Retryable, v.Error)
	}
	if w, _ := ds.WaitConnected(ctxLimit(t), id); w.Sessions != 1 {
		t.Errorf("%d sessions, want the first one kept", w.Sessions)
	}
}

// TestSettleLogs: once a session has ended, a batch whose send failed goes
// back to the queue, unless the studio closed with 1009 (too large): then
// it is dropped with a marker.
func TestSettleLogs(t *testing.T) {
	tests := []struct {
		name      string
		closeCode int
		want      string // first queued entry's message (prefix)
	}{
		{"dropped connection: requeued", 0, "lost"},
		{"going away: requeued", 1001, "lost"},
		{"too large: dropped with a marker", 1009, "dropped a log batch of 1 entries"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := logship.New()
			q.Push(entryText("lost"))
			c, err := New(Config{BaseURL: "http://127.0.0.1:1/", Capabilities: testCaps, Jobs: newRunner(), Logs: q})
			if err != nil {
				t.Fatal(err)
			}
			s := &session{c: c, log: c.log, unsent: q.NextBatch(1 << 20)}
			s.settleLogs(outcome{kind: outDisconnected, closeCode: tt.closeCode})
			got := q.Drain()
			if len(got) != 1 || !strings.HasPrefix(got[0].Message, tt.want) {
				t.Errorf("queue %+v, want one entry starting %q", got, tt.want)
			}
		})
	}
}

// TestOfferWithEmptyStringsIsAccepted: gameId, assetName and an image
// prompt that are present but empty are valid strings under the spec, and
// the reference worker runs such a job; so does this one (before: rejected
// as "missing gameId", so such jobs ran on no stoker node).
func TestOfferWithEmptyStringsIsAccepted(t *testing.T) {
	st := newTestStudio(t)
	w := startWorker(t, st, nil)
	sc := st.accept(t)
	sc.welcome(t)
	sc.sendRaw(t, websocket.TextMessage, []byte(`{"type":"offer","claim":{"jobId":"job-empty","gameId":"","assetName":"","model":"m","vramGbEstimate":1,
		"task":{"kind":"image","prompt":""},"modelSource":{"engine":"synthetic","files":[],"cliDefaults":{"cfgScale":1,"steps":1,"width":1,"height":1}}}}`))
	if a := nextOf[protocol.Accept](t, sc); a.JobID != "job-empty" {
		t.Fatalf("accept for %q, want job-empty", a.JobID)
	}
	if got := waitFor(t, w.runner.started, "RunJob"); got != "job-empty" {
		t.Errorf("ran %q, want job-empty", got)
	}
}

// TestFloodWhileFinishingIsBounded: while a job reports its outcome, one
// offer may wait for the slot; a flood of offers meanwhile must not start a
// goroutine each (before: each waited up to 2 s on a goroutine of its own).
func TestFloodWhileFinishingIsBounded(t *testing.T) {
	st := newTestStudio(t)
	w := startWorker(t, st, func(c *Config) {
		c.WriteTimeout = time.Minute
		// Offers still unread when the slot frees are run: room for them.
		r := c.Jobs.(*fakeRunner)
		r.started, r.ended = make(chan string, 3000), make(chan string, 3000)
	})
	reported := make(chan error, 1)
	big := json.RawMessage(`{"text":"` + strings.Repeat("f", 15<<20) + `"}`)
	w.runner.run = func(ctx context.Context, c *protocol.JobOfferClaim, rep Reporter) {
		if c.JobID == "job-big" {
			reported <- rep.CompleteJSON(ctx, big, "p") // blocks while the studio does not read
		}
	}
	sc := st.accept(t)
	sc.welcome(t)
	sc.send(t, offer("job-big"))
	nextOf[protocol.Accept](t, sc)
	release := sc.holdReads()
	defer release()
	eventually(t, "the job to be reporting", func() bool { return w.c.finishing.Load() })
	base := runtime.NumGoroutine()
	stop := peakGoroutines()
	const n = 2000
	for i := range n {
		sc.send(t, offer(fmt.Sprintf("during-%d", i)))
	}
	release()
	if err := waitFor(t, reported, "the report"); err != nil {
		t.Fatalf("CompleteJSON = %v", err)
	}
	// Offers are read in order: once one sent now is answered, the flood
	// has been handled (its rejects sent, or dropped while the writer was
	// busy with the report; so may this one be, hence the retries).
	answeredProbe(t, sc, "last")
	peak := stop()
	t.Logf("%d offers while reporting: goroutines %d before, %d at the peak", n, base, peak)
	if peak > base+50 {
		t.Errorf("goroutines peaked at %d (from %d), want at most %d", peak, base, base+50)
	}
}

// answeredProbe offers probe-0, probe-1, … until one is answered (accept or
// reject): a reject can be dropped while the worker's writer is behind.
func answeredProbe(t *testing.T, sc *studioConn, prefix string) {
	t.Helper()
	for i := range 10 {
		id := fmt.Sprintf("%s-%d", prefix, i)
		sc.send(t, offer(id))
		deadline := time.After(2 * time.Second)
		for waiting := true; waiting; {
			select {
			case f := <-sc.frames:
				switch f := f.(type) {
				case protocol.Reject:
					if f.JobID == id {
						return
					}
				case protocol.Accept:
					if f.JobID == id {
						return
					}
				}
			case <-deadline:
				waiting = false
			}
		}
	}
	t.Fatal("no probe offer answered in 10 tries")
}
