package studio

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/stokerhq/stoker/supervisor/internal/logship"
	"github.com/stokerhq/stoker/supervisor/internal/protocol"
	"github.com/stokerhq/stoker/supervisor/internal/secret"
)

func newFloodQueue(n int) *logship.Queue {
	q := logship.New()
	for i := 0; i < n; i++ {
		q.Push(entryText(fmt.Sprintf("flood %d", i)))
	}
	return q
}

func entryText(s string) logship.Entry {
	return logship.Entry{Ts: "2026-06-11T09:14:03.512Z", Level: "info", Category: "test", Message: s}
}

// TestSessionHandshake checks the upgrade request (§3.1), that hello is the
// first frame (R1) and that nothing else is sent, and offers are not
// answered, before welcome (R2, R8, I-1), with the welcome held back.
func TestSessionHandshake(t *testing.T) {
	st := newTestStudio(t)
	w := startWorker(t, st, func(c *Config) {
		c.HeartbeatInterval = 1 // as fast as a ticker goes: a pre-welcome pump would flood
	})
	sc := st.accept(t)
	if got, want := sc.path, "/graphics/api/workers/w-9f2c/connect"; got != want {
		t.Errorf("upgrade path = %q, want %q", got, want)
	}
	if got := sc.header.Get("Authorization"); got != "Bearer "+testToken {
		t.Errorf("Authorization = %q, want the bearer token", got)
	}
	if got := sc.header.Get("Sec-WebSocket-Protocol"); got != protocol.Subprotocol {
		t.Errorf("Sec-WebSocket-Protocol = %q, want %q", got, protocol.Subprotocol)
	}
	f := sc.next(t)
	hello, ok := f.(protocol.Hello)
	if !ok {
		t.Fatalf("first frame is %s, want hello", protocol.TypeOf(f))
	}
	if hello.AuthToken != testToken {
		t.Error("hello does not carry the auth token")
	}
	if !hello.Capabilities.AutoEnabled || hello.Capabilities.MachineName != "render-07" {
		t.Errorf("hello capabilities = %+v, want the snapshot with autoEnabled", hello.Capabilities)
	}

	// Welcome delayed: an offer and an ack arrive first and are dropped.
	sc.send(t, offer("job-early"))
	sc.send(t, protocol.HeartbeatAck{})
	for i := 0; i < 20; i++ {
		sc.roundTrip(t, "pre-welcome")
	}
	select {
	case f := <-sc.frames:
		t.Fatalf("worker sent %s before welcome", protocol.TypeOf(f))
	default:
	}
	if got := w.c.Status().State; got != StateAwaitingWelcome {
		t.Errorf("state before welcome = %v, want %v", got, StateAwaitingWelcome)
	}

	sc.send(t, protocol.Welcome{WorkerID: testWorker, ServerTime: "now"})
	if hb := nextOf[protocol.Heartbeat](t, sc); hb.CurrentJobID != "" || !hb.Capabilities.AutoEnabled {
		t.Errorf("first heartbeat = %+v, want idle and enabled", hb)
	}
	// The early offer was never answered: the next job frame is for job-2.
	sc.send(t, offer("job-2"))
	for {
		f := sc.next(t)
		if a, ok := f.(protocol.Accept); ok {
			if a.JobID != "job-2" {
				t.Fatalf("accepted %q, want job-2", a.JobID)
			}
			break
		}
		if r, ok := f.(protocol.Reject); ok {
			t.Fatalf("got reject %+v; the pre-welcome offer must be dropped silently", r)
		}
	}
	eventually(t, "welcomed status", func() bool {
		s := w.c.Status()
		return s.State == StateWelcomed && s.ServerTime == "now" && s.Welcomed && s.Connected
	})
}

func TestOfferAcceptRunComplete(t *testing.T) {
	st := newTestStudio(t)
	release := make(chan struct{})
	var w *worker
	w = startWorker(t, st, func(c *Config) { c.HeartbeatInterval = 5e6 })
	w.runner.run = func(ctx context.Context, c *protocol.JobOfferClaim, rep Reporter) {
		if c.JobID != "job-400" {
			return
		}
		<-release
		if err := rep.CompleteJSON(ctx, json.RawMessage(`{"object":"chat.completion"}`), c.Task.Prompt()); err != nil {
			t.Errorf("CompleteJSON: %v", err)
		}
		if err := rep.Fail(ctx, "late", true); !errors.Is(err, ErrAlreadyReported) {
			t.Errorf("second report = %v, want ErrAlreadyReported", err)
		}
	}
	sc := st.accept(t)
	sc.welcome(t)
	sc.send(t, offer("job-400"))
	if a := nextOf[protocol.Accept](t, sc); a.JobID != "job-400" {
		t.Fatalf("accept for %q", a.JobID)
	}
	waitFor(t, w.runner.started, "RunJob")
	// The heartbeat reports the running job (I-14).
	for {
		hb := nextOf[protocol.Heartbeat](t, sc)
		if hb.CurrentJobID == "job-400" {
			break
		}
	}
	// One slot: a second offer is rejected busy (R3, I-16).
	sc.send(t, offer("job-401"))
	rej := nextOf[protocol.Reject](t, sc)
	if want := (protocol.Reject{JobID: "job-401", Reason: protocol.ReasonBusy, Code: protocol.RejectBusy}); rej != want {
		t.Errorf("reject = %+v, want %+v", rej, want)
	}
	close(release)
	cj := nextOf[protocol.CompleteJSON](t, sc)
	if cj.JobID != "job-400" || cj.Prompt != "Say hello" || string(cj.Result) != `{"object":"chat.completion"}` {
		t.Errorf("completeJson = %+v", cj)
	}
	waitFor(t, w.runner.ended, "RunJob return")
	// The slot is free again and currentJobId cleared.
	for {
		hb := nextOf[protocol.Heartbeat](t, sc)
		if hb.CurrentJobID == "" {
			break
		}
	}
	w.waitIdle(t)
	sc.send(t, offer("job-402"))
	if a := nextOf[protocol.Accept](t, sc); a.JobID != "job-402" {
		t.Fatalf("accept for %q, want job-402", a.JobID)
	}
}

func TestOfferWhilePaused(t *testing.T) {
	st := newTestStudio(t)
	w := startWorker(t, st, func(c *Config) { c.HeartbeatInterval = 5e6 })
	w.c.SetPaused(true)
	sc := st.accept(t)
	if h := sc.welcome(t); h.Capabilities.AutoEnabled {
		t.Error("hello while paused says autoEnabled")
	}
	if hb := nextOf[protocol.Heartbeat](t, sc); hb.Capabilities.AutoEnabled {
		t.Error("heartbeat while paused says autoEnabled (§9.2)")
	}
	sc.send(t, offer("job-1"))
	rej := nextOf[protocol.Reject](t, sc)
	if want := (protocol.Reject{JobID: "job-1", Reason: protocol.ReasonPaused, Code: protocol.RejectPaused}); rej != want {
		t.Errorf("reject = %+v, want %+v", rej, want)
	}
	if n := w.runner.admits.Load(); n != 0 {
		t.Errorf("Admit called %d times while paused", n)
	}
	if !w.c.Paused() || !w.c.Status().Paused {
		t.Error("Paused() is false")
	}
	w.c.SetPaused(false)
	for {
		if hb := nextOf[protocol.Heartbeat](t, sc); hb.Capabilities.AutoEnabled {
			break
		}
	}
	sc.send(t, offer("job-2"))
	if a := nextOf[protocol.Accept](t, sc); a.JobID != "job-2" {
		t.Fatalf("accept for %q after resume", a.JobID)
	}
}

func TestOfferRejections(t *testing.T) {
	tests := []struct {
		name       string
		claim      string
		admitErr   error
		wantReason string
	}{
		{"missing task", `{"jobId":"j","gameId":"g","assetName":"a","model":"m","vramGbEstimate":1,"modelSource":{"engine":"synthetic","files":[],"cliDefaults":{"cfgScale":1,"steps":1,"width":1,"height":1}}}`, nil, "task"},
		{"missing modelSource", `{"jobId":"j","gameId":"g","assetName":"a","model":"m","vramGbEstimate":1,"task":{"kind":"llm","messages":[]}}`, nil, "modelSource"},
		{"missing cliDefaults number", `{"jobId":"j","gameId":"g","assetName":"a","model":"m","vramGbEstimate":1,"task":{"kind":"llm","messages":[]},"modelSource":{"engine":"synthetic","files":[],"cliDefaults":{"cfgScale":1,"steps":1,"width":1}}}`, nil, "height"},
		{"hostile filename", `{"jobId":"j","gameId":"g","assetName":"a","model":"m","vramGbEstimate":1,"task":{"kind":"llm","messages":[]},"modelSource":{"engine":"llama-cpp","files":[{"role":"model","url":"https://x/y","filename":"../../etc/passwd"}],"cliDefaults":{"cfgScale":1,"steps":1,"width":1,"height":1}}}`, nil, "filename"},
		{"not admitted", "", errors.New(`no plugin serves engine "onnx"`), `no plugin serves engine "onnx"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newTestStudio(t)
			w := startWorker(t, st, nil)
			w.runner.admit = func(c *protocol.JobOfferClaim) error {
				if c.JobID == "j" {
					return tt.admitErr
				}
				return nil
			}
			sc := st.accept(t)
			sc.welcome(t)
			if tt.claim != "" {
				sc.sendRaw(t, websocket.TextMessage, []byte(`{"type":"offer","claim":`+tt.claim+`}`))
			} else {
				sc.send(t, offer("j"))
			}
			rej := nextOf[protocol.Reject](t, sc)
			if rej.JobID != "j" || rej.Code != "" || !strings.Contains(rej.Reason, tt.wantReason) {
				t.Errorf("reject = %+v, want job j, no code, reason mentioning %q", rej, tt.wantReason)
			}
			// The session survived and the slot is free: a good offer runs.
			sc.send(t, offer("good"))
			if a := nextOf[protocol.Accept](t, sc); a.JobID != "good" {
				t.Errorf("accept for %q, want good", a.JobID)
			}
			if got := waitFor(t, w.runner.started, "RunJob"); got != "good" {
				t.Errorf("ran %q, want only good", got)
			}
		})
	}
}

func TestAuthFailures(t *testing.T) {
	tests := []struct {
		name    string
		upgrade func(n int, w http.ResponseWriter, r *http.Request) bool
		studio  func(t *testing.T, sc *studioConn)
	}{
		{"401 on upgrade", func(n int, w http.ResponseWriter, r *http.Request) bool {
			http.Error(w, `{"error":"unauthorized","reference":"ref-1"}`, http.StatusUnauthorized)
			return true
		}, nil},
		{"auth_failed frame before welcome", nil, func(t *testing.T, sc *studioConn) {
			sc.next(t)
			sc.send(t, protocol.Error{Code: protocol.CodeAuthFailed, Message: "bad token"})
		}},
		{"auth_failed frame after welcome", nil, func(t *testing.T, sc *studioConn) {
			sc.welcome(t)
			sc.send(t, protocol.Error{Code: protocol.CodeAuthFailed, Message: "bad token"})
		}},
		{"close 4001", nil, func(t *testing.T, sc *studioConn) {
			sc.welcome(t)
			sc.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4001, "auth"), deadline())
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newTestStudio(t)
			st.setUpgrade(tt.upgrade)
			w := startWorker(t, st, nil)
			if tt.studio != nil {
				sc := st.accept(t)
				tt.studio(t, sc)
				if err := sc.waitClosed(t); tt.name != "close 4001" {
					var ce *websocket.CloseError
					if !errors.As(err, &ce) || ce.Code != 1000 || ce.Text != "auth failed" {
						t.Errorf("worker closed with %v, want 1000 \"auth failed\"", err)
					}
				}
			}
			if err := w.result(t); !errors.Is(err, ErrAuthFailed) {
				t.Fatalf("Run = %v, want ErrAuthFailed", err)
			}
			if n := st.attempts.Load(); n != 1 {
				t.Errorf("%d connect attempts, want 1 (no reconnect after auth failure)", n)
			}
			if s := w.c.Status(); s.State != StateAuthFailed {
				t.Errorf("state = %v, want %v", s.State, StateAuthFailed)
			}
		})
	}
}

func TestFatalStudioErrors(t *testing.T) {
	tests := []struct {
		name     string
		studio   func(t *testing.T, sc *studioConn)
		wantCode protocol.ErrorCode
	}{
		{"duplicate_worker frame", func(t *testing.T, sc *studioConn) {
			sc.welcome(t)
			sc.send(t, protocol.Error{Code: protocol.CodeDuplicateWorker, Message: "another session"})
		}, protocol.CodeDuplicateWorker},
		{"worker_deleted frame before welcome", func(t *testing.T, sc *studioConn) {
			sc.next(t)
			sc.send(t, protocol.Error{Code: protocol.CodeWorkerDeleted, Message: "gone"})
		}, protocol.CodeWorkerDeleted},
		{"close 4003 without frame", func(t *testing.T, sc *studioConn) {
			sc.welcome(t)
			sc.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4003, "dup"), deadline())
		}, protocol.CodeDuplicateWorker},
		{"close 4004 without frame", func(t *testing.T, sc *studioConn) {
			sc.welcome(t)
			sc.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4004, "deleted"), deadline())
		}, protocol.CodeWorkerDeleted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newTestStudio(t)
			w := startWorker(t, st, nil)
			tt.studio(t, st.accept(t))
			err := w.result(t)
			var fe *FatalError
			if !errors.As(err, &fe) || fe.Code != tt.wantCode {
				t.Fatalf("Run = %v, want a FatalError %s", err, tt.wantCode)
			}
			if n := st.attempts.Load(); n != 1 {
				t.Errorf("%d connect attempts, want 1", n)
			}
		})
	}
}

// TestReconnectingFaults: each fault ends the session and the worker comes
// back with a new one.
func TestReconnectingFaults(t *testing.T) {
	tests := []struct {
		name  string
		fault func(t *testing.T, sc *studioConn)
	}{
		{"internal_error frame", func(t *testing.T, sc *studioConn) {
			sc.send(t, protocol.Error{Code: protocol.CodeInternalError, Message: "oops"})
		}},
		{"protocol_violation frame", func(t *testing.T, sc *studioConn) {
			sc.send(t, protocol.Error{Code: protocol.CodeProtocolViolation, Message: "accept for unknown jobId"})
		}},
		{"close 4002", func(t *testing.T, sc *studioConn) {
			sc.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4002, "violation"), deadline())
		}},
		{"close 1000", func(t *testing.T, sc *studioConn) {
			sc.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""), deadline())
		}},
		{"malformed json", func(t *testing.T, sc *studioConn) {
			sc.sendRaw(t, websocket.TextMessage, []byte(`{"type":"offer","claim":`))
		}},
		{"not an object", func(t *testing.T, sc *studioConn) { sc.sendRaw(t, websocket.TextMessage, []byte(`[1,2]`)) }},
		{"known type missing field", func(t *testing.T, sc *studioConn) {
			sc.sendRaw(t, websocket.TextMessage, []byte(`{"type":"completeAck"}`))
		}},
		{"binary frame", func(t *testing.T, sc *studioConn) { sc.sendRaw(t, websocket.BinaryMessage, []byte{1, 2, 3}) }},
		{"tcp dropped", func(t *testing.T, sc *studioConn) { sc.drop() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newTestStudio(t)
			w := startWorker(t, st, nil)
			sc := st.accept(t)
			sc.welcome(t)
			tt.fault(t, sc)
			sc.waitClosed(t)
			sc2 := st.accept(t)
			sc2.welcome(t)
			eventually(t, "second session welcomed", func() bool { return w.c.Status().Sessions == 2 })
			if s := w.c.Status(); s.LastError == "" {
				t.Error("Status().LastError is empty after a fault")
			}
		})
	}
}

func TestUnknownFrameTypeIsSkipped(t *testing.T) {
	st := newTestStudio(t)
	w := startWorker(t, st, nil)
	sc := st.accept(t)
	sc.welcome(t)
	sc.sendRaw(t, websocket.TextMessage, []byte(`{"type":"shinyNewThing","x":1}`))
	sc.send(t, offer("job-1"))
	if a := nextOf[protocol.Accept](t, sc); a.JobID != "job-1" {
		t.Fatalf("accept for %q", a.JobID)
	}
	if n := st.attempts.Load(); n != 1 {
		t.Errorf("%d sessions, want the first one to survive", n)
	}
	if !strings.Contains(w.logs.String(), "unknown") {
		t.Error("the skipped frame was not logged")
	}
}

// TestUpgradeRefusedIsTransient covers I-20: a non-401 refusal reconnects
// and the body's first 300 characters reach the log and status.
func TestUpgradeRefusedIsTransient(t *testing.T) {
	st := newTestStudio(t)
	long := `{"error":"unavailable","reference":"ref-77"}` + strings.Repeat("x", 1000)
	st.setUpgrade(func(n int, w http.ResponseWriter, r *http.Request) bool {
		if n <= 2 {
			http.Error(w, long, http.StatusServiceUnavailable)
			return true
		}
		return false
	})
	w := startWorker(t, st, nil)
	st.accept(t).welcome(t)
	if n := st.attempts.Load(); n != 3 {
		t.Errorf("%d attempts, want 3", n)
	}
	logs := w.logs.String()
	if !strings.Contains(logs, "ref-77") || !strings.Contains(logs, "503") {
		t.Errorf("log lacks the refusal status and body reference:\n%s", logs)
	}
	if strings.Contains(logs, strings.Repeat("x", 300)) {
		t.Error("log holds more than 300 characters of the body")
	}
}

func TestConnectTimeout(t *testing.T) {
	st := newTestStudio(t)
	hold := make(chan struct{})
	t.Cleanup(func() { close(hold) })
	st.setUpgrade(func(n int, w http.ResponseWriter, r *http.Request) bool {
		if n == 1 {
			// Accept TCP, never upgrade (I-6).
			select {
			case <-hold:
			case <-r.Context().Done():
			}
			return true
		}
		return false
	})
	w := startWorker(t, st, func(c *Config) { c.ConnectTimeout = 50e6 })
	st.accept(t).welcome(t)
	if !strings.Contains(w.logs.String(), "connect timed out") {
		t.Errorf("log lacks the connect timeout:\n%s", w.logs.String())
	}
}

// TestSilentHalfOpenSocket covers I-4/I-5/I-21: after welcome the studio
// says nothing (it only pings, which must not count), and the worker gives
// the socket up after ReadIdleTimeout and reconnects.
func TestSilentHalfOpenSocket(t *testing.T) {
	st := newTestStudio(t)
	w := startWorker(t, st, func(c *Config) {
		c.ReadIdleTimeout = 200e6
		c.HeartbeatInterval = 5e6
	})
	sc := st.accept(t)
	sc.welcome(t)
	stopPing := make(chan struct{})
	pinged := make(chan struct{})
	go func() {
		defer close(pinged)
		for i := 0; ; i++ {
			select {
			case <-stopPing:
				return
			case <-sc.readDone:
				return
			default:
			}
			if sc.ws.WriteControl(websocket.PingMessage, []byte("k"), deadline()) != nil {
				return
			}
			select { // pace the pings on the worker's pongs
			case <-sc.pongs:
			case <-sc.readDone:
				return
			case <-stopPing:
				return
			}
		}
	}()
	sc.waitClosed(t)
	close(stopPing)
	<-pinged
	st.accept(t).welcome(t)
	if !strings.Contains(w.logs.String(), "no frames from server") {
		t.Errorf("log lacks the read-idle cause:\n%s", w.logs.String())
	}
}

// TestOversizedFrame sends 100 MiB at a worker with the default 16 MiB
// limit, as one frame announcing its size and as a fragmented stream: the
// worker ends the session (protocol error), reconnects, and never buffers
// more than its limit.
func TestOversizedFrame(t *testing.T) {
	const size = 100 << 20
	chunk := bytes.Repeat([]byte{'a'}, 1<<20)
	tests := []struct {
		name string
		send func(sc *studioConn) int
	}{
		{"one frame announcing 100 MiB", func(sc *studioConn) int {
			hdr := []byte{0x81, 127, 0, 0, 0, 0, 0, 0, 0, 0}
			for i := 0; i < 8; i++ {
				hdr[2+i] = byte(uint64(size) >> (56 - 8*i))
			}
			conn := sc.ws.UnderlyingConn()
			conn.SetWriteDeadline(deadline())
			if _, err := conn.Write(hdr); err != nil {
				return 0
			}
			sent := 0
			for sent < size {
				n, err := conn.Write(chunk)
				sent += n
				if err != nil {
					break
				}
			}
			return sent
		}},
		{"100 MiB in fragments", func(sc *studioConn) int {
			sc.ws.SetWriteDeadline(deadline())
			wr, err := sc.ws.NextWriter(websocket.TextMessage)
			if err != nil {
				return 0
			}
			sent := 0
			for sent < size {
				n, err := wr.Write(chunk)
				sent += n
				if err != nil {
					break
				}
			}
			wr.Close()
			return sent
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newTestStudio(t)
			w := startWorker(t, st, nil)
			sc := st.accept(t)
			sc.welcome(t)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			sc.writeMu.Lock()
			sent := tt.send(sc)
			sc.writeMu.Unlock()
			st.accept(t).welcome(t)
			runtime.ReadMemStats(&after)
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("studio wrote %d MiB before the worker hung up; %d MiB allocated meanwhile", sent>>20, alloc>>20)
			// Reading up to the 16 MiB limit costs about twice that in
			// growing buffers (more under -race); buffering the frame would
			// cost at least its 100 MiB.
			if alloc >= 96<<20 {
				t.Errorf("allocated %d MiB while refusing a 100 MiB frame, want under 96 MiB", alloc>>20)
			}
			if !strings.Contains(w.logs.String(), "larger than 16777216 bytes") {
				t.Errorf("log lacks the frame-size cause:\n%s", w.logs.String())
			}
		})
	}
}

func TestLogFloodShipsBoundedBatch(t *testing.T) {
	st := newTestStudio(t)
	w := startWorker(t, st, func(c *Config) {
		c.Logs = newFloodQueue(50_000)
		c.LogFlushInterval = 5e6
	})
	sc := st.accept(t)
	sc.welcome(t)
	// The queue's 5000 entries go in batches of at most
	// DefaultMaxLogBatchBytes each.
	var entries []logship.Entry
	for len(entries) < 5000 {
		batch := nextOf[protocol.LogBatch](t, sc)
		if n := logBatchBytes(batch); n > DefaultMaxLogBatchBytes {
			t.Errorf("batch of %d bytes, want at most %d", n, DefaultMaxLogBatchBytes)
		}
		entries = append(entries, batch.Entries...)
	}
	if len(entries) != 5000 {
		t.Fatalf("batches hold %d entries, want 5000", len(entries))
	}
	m := entries[0]
	if m.Level != "warn" || m.Category != "logs" || !strings.HasPrefix(m.Message, "ship queue full (5000 entries); dropped") {
		t.Errorf("first entry = %+v, want the drop marker", m)
	}
	if last := entries[4999].Message; last != "flood 49999" {
		t.Errorf("last entry = %q, want the newest line", last)
	}
	_ = w
}

func logBatchBytes(b protocol.LogBatch) int {
	data, _ := protocol.Encode(b)
	return len(data)
}

func TestGracefulStopClosesAndFlushes(t *testing.T) {
	st := newTestStudio(t)
	w := startWorker(t, st, func(c *Config) { c.Logs = newFloodQueue(0) })
	sc := st.accept(t)
	sc.welcome(t)
	nextOf[protocol.Heartbeat](t, sc)
	w.queue.Push(entryText("goodbye"))
	w.cancel()
	var sawFlush bool
	for !sawFlush {
		f := sc.next(t)
		if b, ok := f.(protocol.LogBatch); ok {
			for _, e := range b.Entries {
				if e.Message == "goodbye" {
					sawFlush = true
				}
			}
		}
	}
	err := sc.waitClosed(t)
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 1000 || ce.Text != "session ended" {
		t.Errorf("close = %v, want 1000 \"session ended\"", err)
	}
	if err := w.result(t); err != nil {
		t.Errorf("Run = %v, want nil on cancel", err)
	}
}

func TestWaitsForCredentials(t *testing.T) {
	st := newTestStudio(t)
	ready := make(chan struct{})
	w := startWorker(t, st, func(c *Config) {
		c.WorkerID = ""
		c.CredentialWait = 1e6
		c.Credentials = func() (string, secret.Value) {
			select {
			case <-ready:
				return testWorker, secret.New(testToken)
			default:
				return "", secret.Value{}
			}
		}
	})
	eventually(t, "waiting state", func() bool { return w.c.Status().State == StateWaitingCredentials })
	if n := st.attempts.Load(); n != 0 {
		t.Fatalf("%d connects without credentials", n)
	}
	close(ready)
	st.accept(t).welcome(t)
	if !strings.Contains(w.logs.String(), "waiting for operator approval") {
		t.Error("waiting was not logged")
	}
}

func deadline() time.Time { return time.Now().Add(waitLimit) }
