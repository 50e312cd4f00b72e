package devstudio

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

func TestConnectAuth(t *testing.T) {
	s := newServer(t, Config{})
	id, token, err := s.AddWorker("w-auth")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, id, token string
	}{
		{"no bearer", id, ""},
		{"wrong token", id, "nope"},
		{"unknown worker", "w-ghost", token},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := dial(t, s, tt.id, tt.token)
			if err == nil {
				t.Fatal("dial: got a connection, want 401")
			}
			w, _ := dial(t, s, tt.id, tt.token)
			if w.resp == nil || w.resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("got response %v, want 401", w.resp)
			}
		})
	}

	t.Run("subprotocol echoed", func(t *testing.T) {
		w, err := dial(t, s, id, token)
		if err != nil {
			t.Fatal(err)
		}
		if got := w.conn.Subprotocol(); got != protocol.Subprotocol {
			t.Errorf("got subprotocol %q, want %q", got, protocol.Subprotocol)
		}
	})

	t.Run("hello with another token", func(t *testing.T) {
		w, err := dial(t, s, id, token)
		if err != nil {
			t.Fatal(err)
		}
		w.send(protocol.Hello{AuthToken: "other", Capabilities: caps()})
		w.expectError(protocol.CodeAuthFailed)
	})
}

func TestOrderingViolations(t *testing.T) {
	tests := []struct {
		name  string
		hold  bool // withhold the welcome
		hello bool // send hello first
		send  func(w *wsWorker)
		code  protocol.ErrorCode
	}{
		{"heartbeat before hello", false, false, func(w *wsWorker) { w.send(protocol.Heartbeat{Capabilities: caps()}) }, protocol.CodeProtocolViolation},
		{"accept before hello", false, false, func(w *wsWorker) { w.send(protocol.Accept{JobID: "job-1"}) }, protocol.CodeProtocolViolation},
		{"heartbeat before welcome", true, true, func(w *wsWorker) { w.send(protocol.Heartbeat{Capabilities: caps()}) }, protocol.CodeProtocolViolation},
		{"logBatch before welcome", true, true, func(w *wsWorker) { w.send(protocol.LogBatch{}) }, protocol.CodeProtocolViolation},
		{"binary frame", false, true, func(w *wsWorker) { w.sendRaw(websocket.BinaryMessage, []byte{1, 2, 3}) }, protocol.CodeProtocolViolation},
		{"malformed json", false, true, func(w *wsWorker) { w.sendRaw(websocket.TextMessage, []byte(`{"type":"heartbeat",`)) }, protocol.CodeProtocolViolation},
		{"missing field", false, true, func(w *wsWorker) { w.sendRaw(websocket.TextMessage, []byte(`{"type":"accept"}`)) }, protocol.CodeProtocolViolation},
		{"studio frame from worker", false, true, func(w *wsWorker) { w.send(protocol.Welcome{WorkerID: "x", ServerTime: "now"}) }, protocol.CodeProtocolViolation},
		{"accept for unknown job", false, true, func(w *wsWorker) { w.send(protocol.Accept{JobID: "job-404"}) }, protocol.CodeProtocolViolation},
		{"fail for unknown job", false, true, func(w *wsWorker) { w.send(protocol.Fail{JobID: "job-404", Error: "x", Retryable: true}) }, protocol.CodeProtocolViolation},
		{"completeJson for unknown job", false, true, func(w *wsWorker) {
			w.send(protocol.CompleteJSON{JobID: "job-404", Result: []byte(`{}`)})
		}, protocol.CodeProtocolViolation},
		{"second hello", false, true, func(w *wsWorker) { w.send(protocol.Hello{AuthToken: w.token, Capabilities: caps()}) }, protocol.CodeProtocolViolation},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			held := make(chan struct{})
			defer close(held)
			cfg := Config{}
			if tt.hold {
				cfg.Hooks.HoldWelcome = func(string) <-chan struct{} { return held }
			}
			s := newServer(t, cfg)
			id, token, _ := s.AddWorker("")
			w, err := dial(t, s, id, token)
			if err != nil {
				t.Fatal(err)
			}
			if tt.hello {
				w.send(protocol.Hello{AuthToken: token, Capabilities: caps()})
				if !tt.hold {
					expect[protocol.Welcome](w)
				}
			}
			tt.send(w)
			w.expectError(tt.code)
		})
	}
}

func TestUnknownFrameIgnoredAndReadyForMoreAllowed(t *testing.T) {
	s := newServer(t, Config{})
	w := connect(t, s)
	w.sendRaw(websocket.TextMessage, []byte(`{"type":"cancelEverything","jobId":"x"}`))
	w.send(protocol.ReadyForMore{})
	w.send(protocol.Heartbeat{Capabilities: caps()})
	expect[protocol.HeartbeatAck](w)
}

func TestHoldWelcome(t *testing.T) {
	release := make(chan struct{})
	s := newServer(t, Config{Hooks: Hooks{HoldWelcome: func(string) <-chan struct{} { return release }}})
	id, token, _ := s.AddWorker("w-held")
	w, err := dial(t, s, id, token)
	if err != nil {
		t.Fatal(err)
	}
	w.send(protocol.Hello{AuthToken: token, Capabilities: caps()})
	// The hello is processed (capabilities stored) but no welcome yet.
	if _, err := s.WaitWorker(ctxT(t), id, func(v WorkerView) bool { return v.Capabilities != nil }); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.WaitWorker(ctxT(t), id, func(WorkerView) bool { return true }); v.Sessions != 0 {
		t.Fatalf("got %d welcomed sessions before release, want 0", v.Sessions)
	}
	close(release)
	expect[protocol.Welcome](w)
}

func TestHeartbeatAckAndCapabilities(t *testing.T) {
	s := newServer(t, Config{})
	w := connect(t, s, protocol.KindImage)
	c := caps(protocol.KindLLM)
	c.UserPresence = protocol.PresenceIdle
	w.send(protocol.Heartbeat{Capabilities: c})
	expect[protocol.HeartbeatAck](w)
	v, err := s.WaitWorker(ctxT(t), w.id, func(v WorkerView) bool {
		return v.Capabilities != nil && v.Capabilities.UserPresence == protocol.PresenceIdle
	})
	if err != nil {
		t.Fatal(err)
	}
	if !v.Connected || v.LastHeartbeat.IsZero() || !v.Capabilities.Serves(protocol.KindLLM) {
		t.Errorf("got %+v, want connected with the heartbeat's capabilities", v)
	}
}

func TestJSONJobLifecycle(t *testing.T) {
	s := newServer(t, Config{})
	w := connect(t, s, protocol.KindLLM)
	id := submit(t, s, "synthetic-llm", llmTask)
	offer := expect[protocol.Offer](w)
	if err := offer.Claim.Validate(); err != nil {
		t.Fatalf("offered claim does not validate: %v", err)
	}
	if offer.Claim.JobID != id || offer.Claim.Model != "synthetic-llm" || offer.Claim.ModelSource.Engine != protocol.EngineSynthetic {
		t.Fatalf("got claim %+v, want job %s of synthetic-llm", offer.Claim, id)
	}
	waitStatus(t, s, id, JobOffered)
	w.send(protocol.Accept{JobID: id})
	waitStatus(t, s, id, JobRunning)
	wv, _ := s.WaitWorker(ctxT(t), w.id, func(v WorkerView) bool { return v.CurrentJobID == id })
	if wv.CurrentJobID != id {
		t.Errorf("worker current job: got %q, want %q", wv.CurrentJobID, id)
	}
	w.send(protocol.CompleteJSON{JobID: id, Result: []byte(`{"object":"chat.completion"}`), Prompt: "Say hello"})
	if ack := expect[protocol.CompleteAck](w); ack.JobID != id {
		t.Errorf("completeAck: got %q, want %q", ack.JobID, id)
	}
	v := waitStatus(t, s, id, JobCompleted)
	if string(v.Result) != `{"object":"chat.completion"}` || v.Prompt != "Say hello" || v.Worker != w.id || v.Attempts != 0 {
		t.Errorf("got %+v, want the result, prompt and worker", v)
	}
	// The worker's share of the round trip: the offer written, then the
	// outcome read.
	if v.OfferedAt.IsZero() || v.ReportedAt.Before(v.OfferedAt) {
		t.Errorf("offered at %v, reported at %v: want both, in that order", v.OfferedAt, v.ReportedAt)
	}
	// Server-driven next offer: a second job is offered without a heartbeat.
	id2 := submit(t, s, "synthetic-llm", llmTask)
	if o := expect[protocol.Offer](w); o.Claim.JobID != id2 {
		t.Errorf("got offer %q, want %q", o.Claim.JobID, id2)
	}
	// A second outcome for the completed job is stray: refused, and counted.
	w.send(protocol.CompleteJSON{JobID: id, Result: []byte(`{}`)})
	w.expectError(protocol.CodeProtocolViolation)
	if st := s.Stats(); st != (Stats{Accepts: 1, Outcomes: 1, Stray: 1}) {
		t.Errorf("stats %+v, want 1 accept, 1 outcome, 1 stray", st)
	}
}

func TestOfferSelection(t *testing.T) {
	tests := []struct {
		name  string
		caps  func() protocol.WorkerCapabilities
		model string
		task  string
		offer bool
	}{
		{"kind served", func() protocol.WorkerCapabilities { return caps(protocol.KindImage) }, "synthetic-image", imageTask, true},
		{"kind not served", func() protocol.WorkerCapabilities { return caps(protocol.KindLLM) }, "synthetic-image", imageTask, false},
		{"paused", func() protocol.WorkerCapabilities { c := caps(protocol.KindImage); c.AutoEnabled = false; return c }, "synthetic-image", imageTask, false},
		{"vram too small", func() protocol.WorkerCapabilities { c := caps(protocol.KindImage); c.VramThresholdGb = 4; return c }, "big", imageTask, false},
		{"vram enough", func() protocol.WorkerCapabilities { c := caps(protocol.KindImage); c.VramThresholdGb = 8; return c }, "big", imageTask, true},
		{"only when idle, active", func() protocol.WorkerCapabilities {
			c := caps(protocol.KindImage)
			c.OnlyWhenIdle, c.UserPresence = true, protocol.PresenceActive
			return c
		}, "synthetic-image", imageTask, false},
		{"only when idle, idle", func() protocol.WorkerCapabilities {
			c := caps(protocol.KindImage)
			c.OnlyWhenIdle, c.UserPresence = true, protocol.PresenceIdle
			return c
		}, "synthetic-image", imageTask, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cat := DefaultCatalog()
			src, _ := cat.Get("synthetic-image")
			src.VramGbEstimate = 8
			if err := cat.Add("big", src); err != nil {
				t.Fatal(err)
			}
			s := newServer(t, Config{Catalog: cat})
			w := connect(t, s)
			id := submit(t, s, tt.model, tt.task)
			w.send(protocol.Heartbeat{Capabilities: tt.caps()})
			expect[protocol.HeartbeatAck](w)
			// A second heartbeat's ack proves no offer was queued between.
			w.send(protocol.Heartbeat{Capabilities: tt.caps()})
			f, err := w.recv()
			if err != nil {
				t.Fatal(err)
			}
			o, gotOffer := f.(protocol.Offer)
			if gotOffer != tt.offer {
				t.Fatalf("got %#v, want offer=%v", f, tt.offer)
			}
			if gotOffer && o.Claim.JobID != id {
				t.Errorf("got offer %q, want %q", o.Claim.JobID, id)
			}
		})
	}
}

func TestEarliestConnectedWins(t *testing.T) {
	s := newServer(t, Config{})
	first := connect(t, s, protocol.KindLLM)
	second := connect(t, s, protocol.KindLLM)
	for _, w := range []*wsWorker{second, first} {
		w.send(protocol.Heartbeat{Capabilities: caps(protocol.KindLLM)})
		expect[protocol.HeartbeatAck](w)
	}
	id := submit(t, s, "synthetic-llm", llmTask)
	if o := expect[protocol.Offer](first); o.Claim.JobID != id {
		t.Fatalf("got %q, want %q", o.Claim.JobID, id)
	}
	if v, _ := s.Job(id); v.Worker != first.id {
		t.Errorf("got worker %q, want the earliest-connected %q", v.Worker, first.id)
	}
}

func TestFailRetryableUntilMaxAttempts(t *testing.T) {
	s := newServer(t, Config{MaxAttempts: 3})
	w := connect(t, s, protocol.KindLLM)
	id := submit(t, s, "synthetic-llm", llmTask)
	for attempt := 1; attempt <= 3; attempt++ {
		if o := expect[protocol.Offer](w); o.Claim.JobID != id {
			t.Fatalf("attempt %d: got offer %q, want %q", attempt, o.Claim.JobID, id)
		}
		w.send(protocol.Accept{JobID: id})
		w.send(protocol.Fail{JobID: id, Error: "engine crashed", Retryable: true})
		if ack := expect[protocol.FailAck](w); ack.JobID != id {
			t.Fatalf("failAck: got %q, want %q", ack.JobID, id)
		}
	}
	v := waitStatus(t, s, id, JobFailed)
	if v.Attempts != 3 || v.Error != "engine crashed" || !v.Retryable {
		t.Errorf("got %+v, want failed after 3 attempts", v)
	}
}

func TestFailNotRetryable(t *testing.T) {
	s := newServer(t, Config{})
	w := connect(t, s, protocol.KindLLM)
	id := submit(t, s, "synthetic-llm", llmTask)
	expect[protocol.Offer](w)
	w.send(protocol.Accept{JobID: id})
	w.send(protocol.Fail{JobID: id, Error: "cannot serve llm", Retryable: false})
	expect[protocol.FailAck](w)
	if v := waitStatus(t, s, id, JobFailed); v.Attempts != 1 {
		t.Errorf("got %d attempts, want 1", v.Attempts)
	}
}

func TestRejectTransient(t *testing.T) {
	tests := []struct {
		name   string
		reject protocol.Reject
	}{
		{"busy code", protocol.Reject{Reason: "whatever", Code: protocol.RejectBusy}},
		{"paused code", protocol.Reject{Reason: "whatever", Code: protocol.RejectPaused}},
		{"seed busy text", protocol.Reject{Reason: protocol.ReasonBusy}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t, Config{})
			w := connect(t, s, protocol.KindLLM)
			id := submit(t, s, "synthetic-llm", llmTask)
			expect[protocol.Offer](w)
			r := tt.reject
			r.JobID = id
			w.send(r)
			v := waitStatus(t, s, id, JobQueued)
			if v.Attempts != 0 {
				t.Errorf("got %d attempts, want 0 (transient)", v.Attempts)
			}
			// No immediate re-offer: the next frame is the heartbeat's ack,
			// and the self-heal on that heartbeat offers it again.
			w.send(protocol.Heartbeat{Capabilities: caps(protocol.KindLLM)})
			expect[protocol.HeartbeatAck](w)
			if o := expect[protocol.Offer](w); o.Claim.JobID != id {
				t.Errorf("got offer %q, want %q", o.Claim.JobID, id)
			}
		})
	}
}

func TestRejectOtherCountsAndMovesOn(t *testing.T) {
	s := newServer(t, Config{})
	a := connect(t, s, protocol.KindLLM)
	b := connect(t, s, protocol.KindLLM)
	id := submit(t, s, "synthetic-llm", llmTask)
	expect[protocol.Offer](a)
	a.send(protocol.Reject{JobID: id, Reason: "cannot serve llm"})
	if o := expect[protocol.Offer](b); o.Claim.JobID != id {
		t.Fatalf("got %q, want %q on the other worker", o.Claim.JobID, id)
	}
	v, _ := s.Job(id)
	if v.Attempts != 1 || v.Worker != b.id {
		t.Errorf("got %+v, want attempts 1 on %s", v, b.id)
	}
	// The rejecting worker is not offered the job again.
	a.send(protocol.Heartbeat{Capabilities: caps(protocol.KindLLM)})
	expect[protocol.HeartbeatAck](a)
	b.send(protocol.Reject{JobID: id, Reason: "cannot serve llm"})
	waitStatus(t, s, id, JobQueued)
	a.send(protocol.Heartbeat{Capabilities: caps(protocol.KindLLM)})
	expect[protocol.HeartbeatAck](a)
	a.send(protocol.Heartbeat{Capabilities: caps(protocol.KindLLM)})
	expect[protocol.HeartbeatAck](a)
}

func TestSocketCloseReleasesClaim(t *testing.T) {
	tests := []struct {
		name     string
		accept   bool
		attempts int
	}{
		{"offered", false, 0},
		{"running", true, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t, Config{})
			w := connect(t, s, protocol.KindLLM)
			id := submit(t, s, "synthetic-llm", llmTask)
			expect[protocol.Offer](w)
			if tt.accept {
				w.send(protocol.Accept{JobID: id})
				waitStatus(t, s, id, JobRunning)
			}
			w.conn.Close()
			v := waitStatus(t, s, id, JobQueued)
			if v.Attempts != tt.attempts {
				t.Errorf("got %d attempts, want %d", v.Attempts, tt.attempts)
			}
			if _, err := s.WaitWorker(ctxT(t), w.id, func(v WorkerView) bool { return !v.Connected }); err != nil {
				t.Fatal(err)
			}
			// Another worker picks it up.
			other := connect(t, s, protocol.KindLLM)
			other.send(protocol.Heartbeat{Capabilities: caps(protocol.KindLLM)})
			expect[protocol.HeartbeatAck](other)
			if o := expect[protocol.Offer](other); o.Claim.JobID != id {
				t.Errorf("got %q, want %q", o.Claim.JobID, id)
			}
		})
	}
}

func TestDuplicateWorker(t *testing.T) {
	s := newServer(t, Config{})
	id, token, _ := s.AddWorker("w-dup")
	old := connectAs(t, s, id, token, protocol.KindLLM)
	job := submit(t, s, "synthetic-llm", llmTask)
	expect[protocol.Offer](old)
	old.send(protocol.Accept{JobID: job})
	waitStatus(t, s, job, JobRunning)

	fresh := connectAs(t, s, id, token, protocol.KindLLM)
	old.expectError(protocol.CodeDuplicateWorker)
	// The old session's claim is released and the new session gets it.
	fresh.send(protocol.Heartbeat{Capabilities: caps(protocol.KindLLM)})
	var got protocol.Offer
	for {
		f, err := fresh.recv()
		if err != nil {
			t.Fatal(err)
		}
		if o, ok := f.(protocol.Offer); ok {
			got = o
			break
		}
		if _, ok := f.(protocol.HeartbeatAck); !ok {
			t.Fatalf("got %#v, want an offer", f)
		}
		fresh.send(protocol.Heartbeat{Capabilities: caps(protocol.KindLLM)})
	}
	if got.Claim.JobID != job {
		t.Errorf("got %q, want %q", got.Claim.JobID, job)
	}
}

func TestStaleSessionClosed(t *testing.T) {
	s := newServer(t, Config{StaleAfter: 100e6, StaleCheckEvery: 20e6}) // 100 ms, 20 ms
	w := connect(t, s, protocol.KindLLM)
	id := submit(t, s, "synthetic-llm", llmTask)
	expect[protocol.Offer](w)
	w.send(protocol.Accept{JobID: id})
	// No more heartbeats: the studio closes the session and releases it.
	for {
		_, err := w.recv()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if !errorsAs(err, &ce) || ce.Code != protocol.CloseNormal {
			t.Fatalf("got %v, want close 1000", err)
		}
		break
	}
	if v := waitStatus(t, s, id, JobQueued); v.Attempts != 1 {
		t.Errorf("got %d attempts, want 1", v.Attempts)
	}
}

func TestLogBatchKept(t *testing.T) {
	s := newServer(t, Config{LogRing: 3})
	w := connect(t, s)
	var entries []protocol.LogEntry
	for i := 0; i < 5; i++ {
		entries = append(entries, protocol.LogEntry{Ts: "2026-06-11T09:14:03.512Z", Level: "info", Category: "ws", Message: string(rune('a' + i))})
	}
	w.send(protocol.LogBatch{Entries: entries})
	if _, err := s.WaitWorker(ctxT(t), w.id, func(v WorkerView) bool { return v.LogCount == 5 }); err != nil {
		t.Fatal(err)
	}
	logs, ok := s.WorkerLogs(w.id)
	if !ok || len(logs) != 3 || logs[0].Message != "c" || logs[2].Message != "e" {
		t.Errorf("got %+v, want the newest 3 entries", logs)
	}
}

func TestFaultHooks(t *testing.T) {
	t.Run("send error", func(t *testing.T) {
		for _, code := range []protocol.ErrorCode{protocol.CodeAuthFailed, protocol.CodeDuplicateWorker, protocol.CodeWorkerDeleted, protocol.CodeInternalError} {
			s := newServer(t, Config{})
			w := connect(t, s)
			if err := s.SendError(w.id, code, "hook"); err != nil {
				t.Fatal(err)
			}
			w.expectError(code)
		}
	})
	t.Run("delete worker", func(t *testing.T) {
		s := newServer(t, Config{})
		w := connect(t, s)
		if err := s.DeleteWorker(w.id); err != nil {
			t.Fatal(err)
		}
		w.expectError(protocol.CodeWorkerDeleted)
		if _, err := dial(t, s, w.id, w.token); err == nil {
			t.Error("dial after delete: got a connection, want 401")
		}
	})
	t.Run("send raw", func(t *testing.T) {
		s := newServer(t, Config{})
		w := connect(t, s)
		for _, raw := range []struct {
			mt   int
			data string
		}{{websocket.TextMessage, `{"type":"nonsense"}`}, {websocket.TextMessage, `{not json`}, {websocket.BinaryMessage, "\x00\x01"}} {
			if err := s.SendRaw(w.id, raw.mt, []byte(raw.data)); err != nil {
				t.Fatal(err)
			}
			mt, data, err := w.conn.ReadMessage()
			if err != nil || mt != raw.mt || string(data) != raw.data {
				t.Errorf("got %d %q %v, want %d %q", mt, data, err, raw.mt, raw.data)
			}
		}
	})
	t.Run("offer regardless of state", func(t *testing.T) {
		s := newServer(t, Config{})
		w := connect(t, s, protocol.KindLLM)
		claim := protocol.JobOfferClaim{JobID: "job-x", GameID: "g", AssetName: "a", Model: "synthetic-llm"}
		if err := s.SendOffer(w.id, claim); err != nil {
			t.Fatal(err)
		}
		if o := expect[protocol.Offer](w); o.Claim.JobID != "job-x" {
			t.Errorf("got %q, want job-x", o.Claim.JobID)
		}
		// A busy reject of it is ignored; the session goes on.
		w.send(protocol.Reject{JobID: "job-x", Reason: protocol.ReasonBusy, Code: protocol.RejectBusy})
		w.send(protocol.Heartbeat{Capabilities: caps(protocol.KindLLM)})
		expect[protocol.HeartbeatAck](w)
	})
	t.Run("silent half-open", func(t *testing.T) {
		s := newServer(t, Config{})
		w := connect(t, s)
		if err := s.SetSilent(w.id, true); err != nil {
			t.Fatal(err)
		}
		w.send(protocol.Heartbeat{Capabilities: caps()})
		w.send(protocol.LogBatch{Entries: []protocol.LogEntry{{Ts: "t", Level: "info", Category: "c", Message: "m"}}})
		if _, err := s.WaitWorker(ctxT(t), w.id, func(v WorkerView) bool { return v.LogCount == 1 }); err != nil {
			t.Fatal(err)
		}
		if err := s.DropWorker(w.id); err != nil {
			t.Fatal(err)
		}
		// Nothing was sent: the first read sees the dropped socket, not an ack.
		if f, err := w.recv(); err == nil {
			t.Errorf("got %#v, want nothing before the drop", f)
		}
	})
	t.Run("drop on accept", func(t *testing.T) {
		s := newServer(t, Config{Hooks: Hooks{Drop: func(_ string, p Point, _ string) bool { return p == PointAccept }}})
		w := connect(t, s, protocol.KindLLM)
		id := submit(t, s, "synthetic-llm", llmTask)
		expect[protocol.Offer](w)
		w.send(protocol.Accept{JobID: id})
		if f, err := w.recv(); err == nil {
			t.Fatalf("got %#v, want the socket dropped", f)
		}
		if v := waitStatus(t, s, id, JobQueued); v.Attempts != 0 {
			t.Errorf("got %d attempts, want 0 (the accept was lost)", v.Attempts)
		}
	})
	t.Run("no session", func(t *testing.T) {
		s := newServer(t, Config{})
		if err := s.SendError("w-none", protocol.CodeAuthFailed, "x"); err == nil {
			t.Error("got nil, want an error for a worker without session")
		}
		if err := s.DropWorker("w-none"); err == nil {
			t.Error("got nil, want an error for a worker without session")
		}
	})
}

func TestCloseIsIdempotentAndClosesSessions(t *testing.T) {
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	w := connect(t, s)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if f, err := w.recv(); err == nil {
		t.Errorf("got %#v, want the session closed", f)
	}
	if _, err := s.Submit("synthetic", []byte(llmTask)); err == nil {
		t.Error("Submit after Close: got nil, want an error")
	}
}

func TestServeOnListener(t *testing.T) {
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	var lc net.ListenConfig
	l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	for { // bind notifies Changed once the URL is set
		ch := s.Changed()
		if s.URL() != "" {
			break
		}
		select {
		case <-ch:
		case <-ctxT(t).Done():
			t.Fatal("server never bound")
		}
	}
	w := connect(t, s, protocol.KindLLM)
	if v, err := s.WaitConnected(ctxT(t), w.id); err != nil || !v.Connected {
		t.Fatalf("WaitConnected: got %+v, %v", v, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve: got %v, want http.ErrServerClosed", err)
	}
}

// BenchmarkJSONJobRoundTrip measures submit → offer → accept →
// completeJson → completeAck through one worker session.
func BenchmarkJSONJobRoundTrip(b *testing.B) {
	s := newServer(b, Config{})
	w := connect(b, s, protocol.KindLLM)
	result := []byte(`{"object":"chat.completion"}`)
	b.ReportAllocs()
	for b.Loop() {
		id := submit(b, s, "synthetic-llm", llmTask)
		expect[protocol.Offer](w)
		w.send(protocol.Accept{JobID: id})
		w.send(protocol.CompleteJSON{JobID: id, Result: result, Prompt: "Say hello"})
		expect[protocol.CompleteAck](w)
	}
}
