package studio

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

// runOneJob starts a worker whose runner calls job with the job's
// reporter, offers job-400, and waits for the runner to return.
func runOneJob(t *testing.T, st *testStudio, job func(ctx context.Context, rep Reporter)) (*worker, *studioConn) {
	t.Helper()
	w := startWorker(t, st, nil)
	w.runner.run = func(ctx context.Context, c *protocol.JobOfferClaim, rep Reporter) { job(ctx, rep) }
	sc := st.accept(t)
	sc.autoAck.Store(true)
	sc.welcome(t)
	sc.send(t, offer("job-400"))
	nextOf[protocol.Accept](t, sc)
	waitFor(t, w.runner.ended, "RunJob return")
	return w, sc
}

func opener(data []byte, opens *atomic.Int32) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) {
		opens.Add(1)
		return io.NopCloser(bytes.NewReader(data)), nil
	}
}

func TestUploadMultipart(t *testing.T) {
	tests := []struct {
		ext, wantType string
	}{
		{"webp", "image/webp"}, {"png", "image/png"}, {"gif", "image/gif"},
		{"wav", "audio/wav"}, {"mp3", "audio/mpeg"}, {"mp4", "video/mp4"}, {"bin", "application/octet-stream"},
	}
	for _, tt := range tests {
		t.Run(tt.ext, func(t *testing.T) {
			st := newTestStudio(t)
			data := bytes.Repeat([]byte{0, 1, 2, 0xff}, 300_000) // 1.2 MB, streamed
			prompt := strings.Repeat("a very long prompt ", 100) // never a 200-char preview (I-3)
			var opens atomic.Int32
			var err error
			runOneJob(t, st, func(ctx context.Context, rep Reporter) { err = rep.Upload(ctx, tt.ext, prompt, opener(data, &opens)) })
			if err != nil {
				t.Fatalf("Upload: %v", err)
			}
			ups := st.uploadList()
			if len(ups) != 1 {
				t.Fatalf("%d uploads, want 1", len(ups))
			}
			u := ups[0]
			if got, want := strings.Join(u.parts, ","), "prompt,ext,image"; got != want {
				t.Errorf("parts = %s, want %s", got, want)
			}
			if u.path != "/graphics/api/workers/w-9f2c/jobs/job-400/complete" || u.auth != "Bearer "+testToken {
				t.Errorf("upload to %q with auth %q", u.path, u.auth)
			}
			if u.prompt != prompt || u.ext != tt.ext || u.filename != "job-400."+tt.ext || u.ctype != tt.wantType {
				t.Errorf("upload fields: prompt %d chars, ext %q, filename %q, type %q", len(u.prompt), u.ext, u.filename, u.ctype)
			}
			if !bytes.Equal(u.data, data) {
				t.Errorf("uploaded %d bytes, want the %d result bytes", len(u.data), len(data))
			}
		})
	}
}

func TestUploadRetries(t *testing.T) {
	tests := []struct {
		name         string
		statuses     []int
		wantErr      bool
		wantStatus   int
		wantAttempts int
	}{
		{"500 then 200", []int{500, 200}, false, 0, 2},
		{"502 503 then 204", []int{502, 503, 204}, false, 0, 3},
		{"three 500s give up", []int{500, 500, 500, 200}, true, 500, 3},
		{"409 is not retried", []int{409, 200}, true, 409, 1},
		{"400 is not retried", []int{400, 200}, true, 400, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newTestStudio(t)
			st.setUpload(func(n int, w http.ResponseWriter, r *http.Request, u *upload) {
				w.WriteHeader(tt.statuses[n-1])
				io.WriteString(w, `{"error":"nope","reference":"ref-9"}`)
			})
			var opens atomic.Int32
			var err error
			_, sc := runOneJob(t, st, func(ctx context.Context, rep Reporter) {
				err = rep.Upload(ctx, "webp", "p", opener([]byte("img"), &opens))
				if err != nil {
					rep.Fail(ctx, err.Error(), true)
				}
			})
			if got := len(st.uploadList()); got != tt.wantAttempts || int(opens.Load()) != tt.wantAttempts {
				t.Errorf("%d uploads, %d opens; want %d", got, opens.Load(), tt.wantAttempts)
			}
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("Upload: %v", err)
				}
				return
			}
			var ue *UploadError
			if !errors.As(err, &ue) || ue.Status != tt.wantStatus || ue.Attempts != tt.wantAttempts || !strings.Contains(ue.Body, "ref-9") {
				t.Fatalf("Upload = %#v, want an UploadError status %d after %d attempts with the body", err, tt.wantStatus, tt.wantAttempts)
			}
			f := nextOf[protocol.Fail](t, sc)
			if f.JobID != "job-400" || !f.Retryable || !strings.Contains(f.Error, "status") {
				t.Errorf("fail = %+v", f)
			}
		})
	}
}

func TestUploadBadInput(t *testing.T) {
	tests := []struct {
		name string
		ext  string
		open func() (io.ReadCloser, error)
		want string
	}{
		{"hostile ext", "webp\"; name=\"x", func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("x")), nil }, "bad extension"},
		{"path ext", "../x", func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("x")), nil }, "bad extension"},
		{"open fails", "png", func() (io.ReadCloser, error) { return nil, errTest }, "open result"},
		{"read fails midway", "png", func() (io.ReadCloser, error) {
			return io.NopCloser(io.MultiReader(strings.NewReader("partial"), errReader{})), nil
		}, "read result"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newTestStudio(t)
			var err error
			runOneJob(t, st, func(ctx context.Context, rep Reporter) { err = rep.Upload(ctx, tt.ext, "p", tt.open) })
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Upload = %v, want an error mentioning %q", err, tt.want)
			}
			for _, u := range st.uploadList() {
				if u.filename != "" && len(u.data) > 0 && string(u.data) != "partial" {
					t.Errorf("studio recorded a complete upload %+v", u)
				}
			}
		})
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errTest }

func TestCompleteJSONRejectsNonContainer(t *testing.T) {
	st := newTestStudio(t)
	var errs []error
	_, sc := runOneJob(t, st, func(ctx context.Context, rep Reporter) {
		for _, r := range []string{``, `"text"`, `42`, `{"a":`, `null`} {
			errs = append(errs, rep.CompleteJSON(ctx, json.RawMessage(r), "p"))
		}
		errs = append(errs, rep.CompleteJSON(ctx, json.RawMessage(` [1,2] `), "p"))
	})
	for i, err := range errs[:5] {
		if err == nil {
			t.Errorf("result %d accepted, want an error", i)
		}
	}
	if errs[5] != nil {
		t.Errorf("array result refused: %v", errs[5])
	}
	if cj := nextOf[protocol.CompleteJSON](t, sc); string(cj.Result) != "[1,2]" {
		t.Errorf("result = %s", cj.Result)
	}
}

// TestSocketDroppedMidJob covers §5.2 step 8: the job keeps running and its
// slot across the reconnect; the new session rejects offers busy; the job's
// WebSocket reports fail (never sent on the new session, R7) while its HTTP
// upload still lands.
func TestSocketDroppedMidJob(t *testing.T) {
	st := newTestStudio(t)
	w := startWorker(t, st, nil)
	proceed := make(chan struct{})
	type results struct{ complete, fail, upload error }
	got := make(chan results, 1)
	w.runner.run = func(ctx context.Context, c *protocol.JobOfferClaim, rep Reporter) {
		if c.JobID != "job-1" {
			return
		}
		<-proceed
		var r results
		r.complete = rep.CompleteJSON(ctx, json.RawMessage(`{}`), "p")
		r.fail = rep.Fail(ctx, "x", true)
		var opens atomic.Int32
		r.upload = rep.Upload(ctx, "png", "p", opener([]byte("png"), &opens))
		got <- r
	}
	sc := st.accept(t)
	sc.welcome(t)
	sc.send(t, offer("job-1"))
	nextOf[protocol.Accept](t, sc)
	waitFor(t, w.runner.started, "RunJob")
	sc.drop()

	sc2 := st.accept(t)
	sc2.welcome(t)
	sc2.send(t, offer("job-2"))
	if r := nextOf[protocol.Reject](t, sc2); r.Code != protocol.RejectBusy {
		t.Errorf("offer during the old job: %+v, want busy", r)
	}
	if id := w.c.Status().CurrentJobID; id != "job-1" {
		t.Errorf("current job = %q, want job-1", id)
	}
	close(proceed)
	r := waitFor(t, got, "job reports")
	if !errors.Is(r.complete, ErrSessionClosed) || !errors.Is(r.fail, ErrSessionClosed) {
		t.Errorf("WS reports after the drop = %v / %v, want ErrSessionClosed", r.complete, r.fail)
	}
	if r.upload != nil {
		t.Errorf("upload after the drop = %v, want success", r.upload)
	}
	waitFor(t, w.runner.ended, "RunJob return")
	w.waitIdle(t)
	sc2.send(t, offer("job-3"))
	if a := nextOf[protocol.Accept](t, sc2); a.JobID != "job-3" {
		t.Fatalf("accept %q, want job-3", a.JobID)
	}
}

// TestSocketDroppedMidUpload: the studio drops the session while the upload
// is in flight; the upload still completes over HTTP.
func TestSocketDroppedMidUpload(t *testing.T) {
	st := newTestStudio(t)
	inUpload := make(chan struct{})
	dropped := make(chan struct{})
	st.setUpload(func(n int, w http.ResponseWriter, r *http.Request, u *upload) {
		close(inUpload)
		<-dropped
		io.WriteString(w, `{"ok":true}`)
	})
	w := startWorker(t, st, nil)
	upErr := make(chan error, 1)
	w.runner.run = func(ctx context.Context, c *protocol.JobOfferClaim, rep Reporter) {
		var opens atomic.Int32
		upErr <- rep.Upload(ctx, "webp", "p", opener([]byte("webp"), &opens))
	}
	sc := st.accept(t)
	sc.autoAck.Store(true)
	sc.welcome(t)
	sc.send(t, offer("job-1"))
	nextOf[protocol.Accept](t, sc)
	waitFor(t, inUpload, "upload to start")
	sc.drop()
	st.accept(t).welcome(t)
	close(dropped)
	if err := waitFor(t, upErr, "upload result"); err != nil {
		t.Errorf("Upload = %v, want success despite the dropped socket", err)
	}
}

// TestUploadWaitsForTheAcceptToBeRead: the upload (HTTP) does not start
// before the studio has acknowledged the heartbeat sent right after accept
// (WebSocket), so the studio never sees a result before the accept.
func TestUploadWaitsForTheAcceptToBeRead(t *testing.T) {
	st := newTestStudio(t)
	uploaded := make(chan struct{}, 1)
	st.setUpload(func(n int, w http.ResponseWriter, r *http.Request, u *upload) {
		uploaded <- struct{}{}
		io.WriteString(w, `{"ok":true}`)
	})
	w := startWorker(t, st, nil)
	w.runner.run = func(ctx context.Context, c *protocol.JobOfferClaim, rep Reporter) {
		var opens atomic.Int32
		rep.Upload(ctx, "png", "p", opener([]byte("png"), &opens))
	}
	sc := st.accept(t)
	sc.welcome(t)
	nextOf[protocol.Heartbeat](t, sc) // the pump's first
	sc.send(t, protocol.HeartbeatAck{})
	sc.send(t, offer("job-7"))
	nextOf[protocol.Accept](t, sc)
	hb := nextOf[protocol.Heartbeat](t, sc)
	if hb.CurrentJobID != "job-7" {
		t.Fatalf("heartbeat after accept reports job %q, want job-7", hb.CurrentJobID)
	}
	sc.roundTrip(t, "before-ack") // the worker has read everything so far
	select {
	case <-uploaded:
		t.Fatal("the upload started before the studio acknowledged the accept's heartbeat")
	default:
	}
	sc.send(t, protocol.HeartbeatAck{})
	waitFor(t, uploaded, "the upload after the ack")
}

func TestRunnerPanicSendsRetryableFail(t *testing.T) {
	st := newTestStudio(t)
	w := startWorker(t, st, nil)
	w.runner.run = func(ctx context.Context, c *protocol.JobOfferClaim, rep Reporter) { panic("engine exploded") }
	sc := st.accept(t)
	sc.welcome(t)
	sc.send(t, offer("job-1"))
	nextOf[protocol.Accept](t, sc)
	f := nextOf[protocol.Fail](t, sc)
	if f.JobID != "job-1" || !f.Retryable || !strings.Contains(f.Error, "engine exploded") {
		t.Errorf("fail = %+v", f)
	}
	w.waitIdle(t)
	sc.send(t, offer("job-2"))
	if a := nextOf[protocol.Accept](t, sc); a.JobID != "job-2" {
		t.Errorf("slot not released after a panic: %+v", a)
	}
}

// TestAcceptSendFailureReleases covers R4: when accept cannot be sent the
// job is not run and the slot is released.
func TestAcceptSendFailureReleases(t *testing.T) {
	st := newTestStudio(t)
	r := newRunner()
	c, err := New(testConfig(st, r, &syncBuffer{}))
	if err != nil {
		t.Fatal(err)
	}
	s := &session{c: c, log: c.log, done: make(chan struct{}), broken: make(chan struct{})}
	s.closed.Store(true) // a session already torn down
	claim := llmClaim("job-1")
	c.busy.Store(true)
	c.runJob(context.Background(), s, &claim)
	if c.busy.Load() {
		t.Error("slot still reserved after a failed accept")
	}
	if c.Status().CurrentJobID != "" {
		t.Error("currentJobId set without accept")
	}
	select {
	case id := <-r.started:
		t.Errorf("ran %s without accept", id)
	default:
	}
}

// TestLogBatchRequeuedOnSendFailure covers §8.3 LATER: a batch whose send
// fails goes back to the front of the queue, ahead of newer lines, once the
// session has ended.
func TestLogBatchRequeuedOnSendFailure(t *testing.T) {
	st := newTestStudio(t)
	cfg := testConfig(st, newRunner(), &syncBuffer{})
	cfg.Logs = newFloodQueue(3)
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	u, err := protocol.WebSocketURL(cfg.BaseURL, testWorker)
	if err != nil {
		t.Fatal(err)
	}
	conn, out, ok := c.dial(context.Background(), u, cfg.AuthToken)
	if !ok {
		t.Fatalf("dial: %v", out.err)
	}
	st.accept(t)
	conn.Close() // the socket dies under the session
	s := &session{c: c, conn: conn, log: c.log, done: make(chan struct{}), broken: make(chan struct{})}
	if s.flushLogs() {
		t.Fatal("flushLogs reported success on a closed socket")
	}
	cfg.Logs.Push(entryText("newer"))
	s.settleLogs(outcome{kind: outDisconnected}) // the session has ended
	got := cfg.Logs.Drain()
	var msgs []string
	for _, e := range got {
		msgs = append(msgs, e.Message)
	}
	if want := "flood 0,flood 1,flood 2,newer"; strings.Join(msgs, ",") != want {
		t.Errorf("queue after a failed send = %s, want %s", strings.Join(msgs, ","), want)
	}
	select {
	case <-s.broken:
	default:
		t.Error("a failed write did not mark the session broken")
	}
}
