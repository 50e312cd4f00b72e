package hostile

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

// studioCases are the hostile-studio cases (issue 11, points 1, 2, 7, 8).
func studioCases() []Case {
	return []Case{
		{Name: "offer-flood-slow-reader", Run: offerFloodSlowReader,
			What: "100,000 offers to a paused node from a studio that reads its answers slowly: memory stays within 64 MiB of idle; a job is served right after"},
		{Name: "offer-flood-invalid", Run: offerFloodInvalid,
			What: "20,000 offers whose claims are invalid, each refused after validation: memory bounded; a job is served right after"},
		{Name: "huge-frame", Run: hugeFrame,
			What: "a frame announcing 100 MiB and one of 100 MiB in fragments: the node hangs up at its 16 MiB limit without buffering more, reconnects and serves"},
		{Name: "malformed-frames", Run: malformedFrames,
			What: "unknown frame types, wrongly typed claims, garbage JSON, a binary frame: skipped, rejected or a reconnect; never a crash; a job is served after"},
		{Name: "silent-studio", Run: silentStudio,
			What: "a studio that stops reading and sending: the node gives the session up within its read-idle timeout, reconnects and serves"},
		{Name: "close-1009", Run: close1009,
			What: "a studio that closes with 1009 on a log batch over its 4 KiB frame limit: the batch is dropped with a marker, never resent; a job is served after"},
		{Name: "huge-job-id", Run: hugeJobID,
			What: "an offer whose job id is 9 MiB: refused; its log lines reach the studio cut to 8 KiB, never a log batch the studio closes with 1009 for; a job is served after"},
		{Name: "empty-strings", Run: emptyStrings,
			What: "an image claim with empty gameId, assetName and prompt (valid strings under the spec): the job runs and completes"},
		{Name: "upload-411", Run: upload411,
			What: "a studio that answers 411 Length Required to a streamed upload: the result is sent again with its length and the job completes"},
	}
}

// probeRefusals measures the time to refuse an offer on an otherwise idle
// session: n offers made by job, one at a time. It first waits for any
// backlog of answers to drain: it offers until one is answered (a reject
// can be dropped while the node's writer is behind, which the spec allows).
func probeRefusals(ctx context.Context, c *Conn, n int, job func(id string) Job) ([]time.Duration, error) {
	for i := 0; ; i++ {
		if i == 30 {
			return nil, errors.New("no offer answered in 30 tries after the flood")
		}
		tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		out, err := c.Run(tctx, job(fmt.Sprintf("drain-%d", i)))
		cancel()
		if err == nil && out.Rejected != nil {
			break
		}
		if ctx.Err() != nil || errors.Is(err, errSessionEnded) {
			return nil, fmt.Errorf("draining the answers: %w", err)
		}
	}
	var lat []time.Duration
	for i := range n {
		t0 := time.Now()
		out, err := c.Run(ctx, job(fmt.Sprintf("probe-%d", i)))
		if err != nil {
			return lat, err
		}
		if out.Rejected == nil {
			return lat, fmt.Errorf("probe offer: %s, want a reject", out)
		}
		lat = append(lat, time.Since(t0))
	}
	return lat, nil
}

// invalidJob is an offer whose claim lacks its modelSource: decoded, then
// refused by Validate.
func invalidJob(id string) Job {
	return Job{ID: id, Claim: fmt.Sprintf(`{"jobId":%q,"gameId":"g","assetName":"a","model":"m","vramGbEstimate":1,"task":{"kind":"llm","messages":[]}}`, id)}
}

func sumDurations(ds []time.Duration) time.Duration {
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*p/100)]
}

func offerFloodSlowReader(ctx context.Context, e *Env) error {
	if err := e.Agent.SetPaused(ctx, true); err != nil {
		return fmt.Errorf("pause: %w", err)
	}
	c := e.Conn
	lat, err := probeRefusals(ctx, c, 200, LLMJob)
	if err != nil {
		return err
	}
	e.Figure("time to refuse, one offer at a time: p50 %s, p99 %s", percentile(lat, 50), percentile(lat, 99))

	n := e.Scaled(100_000)
	c.TrackRejects("flood-")
	c.ReadDelay.Store(int64(time.Millisecond)) // about 1,000 answers a second
	rss := e.Agent.WatchRSS()
	start := time.Now()
	for i := range n {
		if err := c.Offer(LLMJob(fmt.Sprintf("flood-%d", i))); err != nil {
			rss()
			return fmt.Errorf("offer %d of %d: %w", i, n, err)
		}
	}
	sent := time.Since(start)
	c.ReadDelay.Store(0)
	lat, err = probeRefusals(ctx, c, 200, LLMJob) // after the backlog
	handled := time.Since(start) - sumDurations(lat)
	peak := rss()
	if err != nil {
		return fmt.Errorf("after the flood: %w", err)
	}
	got := c.Rejects("flood-")
	e.Figure("%d offers written in %s; the node had refused them all %s after the first (%.0f/s)",
		n, sent.Round(time.Millisecond), handled.Round(time.Millisecond), float64(n)/handled.Seconds())
	e.Figure("%d rejects reached the slow reader (1 ms a frame while the flood lasted); %d dropped while it was not reading",
		got, n-got)
	e.Figure("time to refuse right after the flood: p50 %s, p99 %s", percentile(lat, 50), percentile(lat, 99))
	e.CheckRSS("under the flood", peak)
	if err := e.Agent.SetPaused(ctx, false); err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	e.ServeAfter(ctx, LLMJob("after-flood"))
	return nil
}

func offerFloodInvalid(ctx context.Context, e *Env) error {
	c := e.Conn
	n := e.Scaled(20_000)
	rss := e.Agent.WatchRSS()
	start := time.Now()
	for i := range n {
		if err := c.Offer(invalidJob(fmt.Sprintf("invalid-%d", i))); err != nil {
			rss()
			return fmt.Errorf("offer %d: %w", i, err)
		}
	}
	lat, err := probeRefusals(ctx, c, 100, invalidJob)
	handled := time.Since(start)
	peak := rss()
	if err != nil {
		return err
	}
	e.Figure("%d invalid offers refused within %s (%.0f/s); %d rejects reached the studio", n, handled.Round(time.Millisecond), float64(n)/handled.Seconds(), c.Count(protocol.TypeReject))
	e.Figure("time to refuse an invalid offer after the flood: p50 %s, p99 %s", percentile(lat, 50), percentile(lat, 99))
	e.CheckRSS("under the flood", peak)
	e.ServeAfter(ctx, LLMJob("after-invalid"))
	return nil
}

// SendFragmented writes one text message of size bytes of filler in
// fragments of 1 MiB (a stream with no size announced up front). It
// returns how many bytes went before the agent hung up.
func (c *Conn) SendFragmented(size int64) int64 {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	c.ws.SetWriteDeadline(time.Now().Add(60 * time.Second))
	w, err := c.ws.NextWriter(websocket.TextMessage)
	if err != nil {
		return 0
	}
	chunk := []byte(strings.Repeat("b", 1<<20))
	var sent int64
	for sent < size {
		n, err := w.Write(chunk[:min(int64(len(chunk)), size-sent)])
		sent += int64(n)
		if err != nil {
			break
		}
	}
	w.Close()
	return sent
}

func hugeFrame(ctx context.Context, e *Env) error {
	const size = 100 << 20
	rss := e.Agent.WatchRSS()
	sent := e.Conn.SendHuge(size)
	<-e.Conn.Done()
	if _, err := e.Session(ctx); err != nil {
		rss()
		return err
	}
	sent2 := e.Conn.SendFragmented(size)
	<-e.Conn.Done()
	if _, err := e.Session(ctx); err != nil {
		rss()
		return err
	}
	peak := rss()
	e.Figure("the node hung up after %d MiB of an announced 100 MiB frame and %d MiB of a fragmented one", sent>>20, sent2>>20)
	e.CheckRSS("refusing two 100 MiB frames", peak)
	e.ServeAfter(ctx, LLMJob("after-huge"))
	return nil
}

func malformedFrames(ctx context.Context, e *Env) error {
	c := e.Conn
	rss := e.Agent.WatchRSS()
	defer rss()
	n := e.Scaled(5_000)
	big := strings.Repeat("u", 1<<20)
	for i := range n {
		data := fmt.Sprintf(`{"type":"cancel","jobId":"x-%d"}`, i)
		if i%1000 == 0 {
			data = `{"type":"cancel","note":"` + big + `"}`
		}
		if err := c.SendRaw(websocket.TextMessage, []byte(data)); err != nil {
			return fmt.Errorf("unknown frame %d: %w", i, err)
		}
	}
	for i := range 100 {
		claim := fmt.Sprintf(`{"jobId":"typed-%d","gameId":7,"task":{"kind":"image","width":"wide"},"modelSource":"x"}`, i)
		if err := c.SendRaw(websocket.TextMessage, []byte(`{"type":"offer","claim":`+claim+`}`)); err != nil {
			return fmt.Errorf("wrongly typed offer: %w", err)
		}
	}
	_ = c.Send(protocol.Welcome{WorkerID: "someone-else", ServerTime: "now"}) // a second welcome: ignored
	out, err := c.Run(ctx, LLMJob("mid-garbage"))
	if err != nil || !out.Completed() {
		e.Lost("job mid-garbage on the same session: %s (%v)", out, err)
	}
	e.Figure("%d unknown frames (every 1000th of 1 MiB) and 100 wrongly typed offers: %d rejects, the session kept", n, c.Count(protocol.TypeReject))
	for _, bad := range []struct {
		mt   int
		data string
	}{{websocket.TextMessage, "{garbage"}, {websocket.BinaryMessage, "\x00\x01binary"}, {websocket.TextMessage, `["not","an","object"]`}} {
		if err := c.SendRaw(bad.mt, []byte(bad.data)); err != nil {
			return err
		}
		<-c.Done() // the node hangs up on a frame it cannot accept
		if c, err = e.Session(ctx); err != nil {
			return err
		}
	}
	e.Figure("3 malformed frames: 3 reconnects (%d sessions in all)", e.Studio.Sessions())
	e.CheckRSS("under the garbage", rss())
	e.ServeAfter(ctx, LLMJob("after-garbage"))
	return nil
}

func silentStudio(ctx context.Context, e *Env) error {
	c := e.Conn
	c.AutoAck.Store(false)
	release := c.HoldReads() // the old session's reader sees nothing until the end
	defer release()
	start := time.Now()
	bound := protocol.ReadIdleTimeout + 15*time.Second
	// The node gives the silent session up and connects again.
	wctx, cancel := context.WithTimeout(ctx, bound)
	_, err := e.Session(wctx)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		e.Unbounded("the node kept a silent session for over %s", bound)
		return nil
	}
	e.Figure("gave the silent session up and reconnected after %s (read-idle timeout %s)", time.Since(start).Round(time.Millisecond), protocol.ReadIdleTimeout)
	e.ServeAfter(ctx, LLMJob("after-silence"))
	return nil
}

// faultsJob is a job for the faults plugin: the prompt's first word names
// what it does (see faults-plugin/faults).
func faultsJob(id, prompt string) Job {
	return Job{ID: id, Model: "faults-llm", Engine: "faults",
		Task: fmt.Sprintf(`{"kind":"llm","messages":[{"role":"user","content":%q}]}`, prompt+" "+id)}
}

// waitFor polls cond against a deadline (state with no event to wait on).
func waitFor(ctx context.Context, d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(20 * time.Millisecond) // polling step
	}
	return true
}

func close1009(ctx context.Context, e *Env) error {
	e.Studio.SetMaxFrame(4 << 10)
	e.Conn.Close(websocket.CloseNormalClosure, "new limit")
	if _, err := e.Session(ctx); err != nil {
		return err
	}
	// A 6 KiB log line from the plugin: under the 8 KiB cut, over the
	// studio's limit. Its job may complete, or lose its session to the
	// 1009 (a real studio requeues it); either is fine here.
	out, err := e.Conn.Run(ctx, faultsJob("log-6k", "huge-log=6KiB"))
	if err != nil && !errors.Is(err, errSessionEnded) {
		return err
	}
	e.Figure("the job with a 6 KiB log line: %s", out)
	if !waitFor(ctx, 10*time.Second, func() bool { return e.Studio.Closes1009() > 0 }) {
		return errors.New("the studio never closed with 1009: the log line never came")
	}
	// The next session ships the marker, and nothing makes the studio
	// close again.
	var marker atomic.Bool
	found := waitFor(ctx, 15*time.Second, func() bool {
		select {
		case <-e.Conn.Done():
			if c, err := e.Studio.NextConn(ctx); err == nil {
				e.Conn = c
			}
		default:
		}
		logs, _ := e.Conn.Logs()
		for _, l := range logs {
			if l.Category == "logs" && strings.Contains(l.Message, "1009") {
				marker.Store(true)
			}
		}
		return marker.Load()
	})
	if !found {
		e.Unbounded("no marker says the refused batch was dropped")
	}
	e.ServeAfter(ctx, LLMJob("after-1009"))
	n := e.Studio.Closes1009()
	e.Figure("closes with 1009: %d (bound %d); marker shipped: %v; %d sessions", n, 3, marker.Load(), e.Studio.Sessions())
	if n > 3 {
		e.Unbounded("the studio closed with 1009 %d times: a refused batch was resent", n)
	}
	return nil
}

func hugeJobID(ctx context.Context, e *Env) error {
	// An offer whose job id is 9 MiB (the frame is under the 16 MiB
	// limit): the node logs the refusal with the id, twice over a batch's
	// worth of the studio's frame limit before entries were cut.
	id := "big-" + strings.Repeat("i", 9<<20)
	rss := e.Agent.WatchRSS()
	// Its reject may be dropped (it is over the reject queue's byte
	// bound), which the spec allows; it must not be run.
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	out, err := e.Conn.Run(rctx, invalidJob(id))
	cancel()
	if err != nil && ctx.Err() != nil {
		rss()
		return ctx.Err()
	}
	if out.Accepted {
		e.Unbounded("the invalid offer with a 9 MiB job id was accepted")
	}
	// Let the log pump ship the refusal's line (cut).
	waitFor(ctx, 10*time.Second, func() bool {
		logs, _ := e.Conn.Logs()
		for _, l := range logs {
			if strings.HasPrefix(l.Message, "rejecting invalid offer") {
				return true
			}
		}
		return e.Studio.Closes1009() > 0
	})
	peak := rss()
	largest := 0
	logs, _ := e.Conn.Logs()
	for _, l := range logs {
		largest = max(largest, len(l.Message)+len(l.JobID))
	}
	e.Figure("the offer with a 9 MiB job id: %s; closes with 1009: %d; the largest log entry the studio received: %d bytes",
		out, e.Studio.Closes1009(), largest)
	_ = err // no answer is a dropped reject
	if n := e.Studio.Closes1009(); n > 0 {
		e.Unbounded("the studio closed with 1009 %d times over the log lines of one offer", n)
	}
	if largest > 16<<10 {
		e.Unbounded("a log entry of %d bytes reached the studio, want it cut to about 8 KiB", largest)
	}
	e.CheckRSS("refusing a 9 MiB job id", peak)
	e.ServeAfter(ctx, LLMJob("after-big-id"))
	return nil
}

func emptyStrings(ctx context.Context, e *Env) error {
	j := Job{ID: "empty-strings", Claim: `{"jobId":"empty-strings","gameId":"","assetName":"","model":"synthetic-image","vramGbEstimate":1,` +
		`"task":{"kind":"image","prompt":"","width":64,"height":64,"steps":1},"modelSource":{"engine":"synthetic","files":[],"cliDefaults":{"cfgScale":1,"steps":1,"width":1,"height":1}}}`}
	out, err := e.Conn.Run(ctx, j)
	if err != nil || !out.Completed() {
		e.Lost("image job with empty gameId, assetName and prompt: %s (%v)", out, err)
		return nil
	}
	e.Figure("image job with empty gameId, assetName and prompt: %s", out)
	return nil
}

func upload411(ctx context.Context, e *Env) error {
	var refused atomic.Int32
	e.Studio.SetUploadHook(func(r *http.Request) int {
		if r.ContentLength < 0 {
			refused.Add(1)
			return http.StatusLengthRequired
		}
		return 0
	})
	out, err := e.Conn.Run(ctx, ImageJob("img-411"))
	if err != nil || !out.Completed() {
		e.Lost("image job behind a 411: %s (%v)", out, err)
		return nil
	}
	e.Figure("image job behind a 411: %s after %d streamed attempt(s) refused", out, refused.Load())
	return nil
}
