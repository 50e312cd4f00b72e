package studio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/stokerhq/stoker/internal/syncbuf"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/hashicorp/go-hclog"

	"github.com/stokerhq/stoker/supervisor/internal/logship"
	"github.com/stokerhq/stoker/supervisor/internal/protocol"
	"github.com/stokerhq/stoker/supervisor/internal/secret"
)

const (
	testWorker = "w-9f2c"
	testToken  = "7c1e-test-token-0123456789abcdef"
	// waitLimit bounds every wait for an event; it is a failure deadline,
	// never a pacing sleep.
	waitLimit = 20 * time.Second
)

// testStudio is a purpose-built studio: a real HTTP + WebSocket server on
// loopback that hands each accepted session to the test and records
// uploads.
type testStudio struct {
	t   testing.TB
	srv *httptest.Server

	conns    chan *studioConn
	attempts atomic.Int32 // upgrade requests seen

	mu sync.Mutex
	// upgrade, if set, may answer an upgrade request itself (return true).
	upgrade func(n int, w http.ResponseWriter, r *http.Request) bool
	// upload answers a result upload (default 200 {"ok":true}).
	upload func(n int, w http.ResponseWriter, r *http.Request, u *upload)
	// uploadFirst, if set, sees an upload before its body is read and may
	// answer it itself (return true).
	uploadFirst func(w http.ResponseWriter, r *http.Request) bool
	uploads     []*upload
	// discard counts the file part's bytes instead of keeping them
	// (benchmarks).
	discard atomic.Bool
}

// upload is a received multipart result.
type upload struct {
	path, auth      string
	parts           []string // part names in order
	prompt, ext     string
	filename, ctype string
	data            []byte
	size            int64
}

// studioConn is one accepted worker session, seen from the studio.
type studioConn struct {
	t      testing.TB
	ws     *websocket.Conn
	header http.Header
	path   string
	frames chan protocol.Frame
	// readErr is set when the studio's reader stops (the worker closed).
	readDone chan struct{}
	readErr  error
	pongs    chan string
	writeMu  sync.Mutex
	// autoAck makes the reader answer every heartbeat with heartbeatAck,
	// as a real studio does; off, the test sends acks itself.
	autoAck atomic.Bool
	gateMu  sync.Mutex    // guards gate
	gate    chan struct{} // non-nil: the reader waits for it before its next read (holdReads)
}

// holdReads makes the studio stop reading the worker's frames (a slow
// reader): once the socket buffers are full, the worker's writes block. The
// returned func resumes reading; a test that holds must release.
func (sc *studioConn) holdReads() (release func()) {
	g := make(chan struct{})
	sc.gateMu.Lock()
	sc.gate = g
	sc.gateMu.Unlock()
	return sync.OnceFunc(func() {
		sc.gateMu.Lock()
		sc.gate = nil
		sc.gateMu.Unlock()
		close(g)
	})
}

func newTestStudio(t *testing.T) *testStudio { return newTestStudioTB(t) }

func newTestStudioTB(t testing.TB) *testStudio {
	t.Helper()
	st := &testStudio{t: t, conns: make(chan *studioConn, 256)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /graphics/api/workers/{id}/connect", st.serveWS)
	mux.HandleFunc("POST /graphics/api/workers/{id}/jobs/{job}/complete", st.serveUpload)
	st.srv = httptest.NewServer(mux)
	t.Cleanup(st.srv.Close)
	return st
}

func (st *testStudio) serveWS(w http.ResponseWriter, r *http.Request) {
	n := int(st.attempts.Add(1))
	st.mu.Lock()
	hook := st.upgrade
	st.mu.Unlock()
	if hook != nil && hook(n, w, r) {
		return
	}
	up := websocket.Upgrader{Subprotocols: []string{protocol.Subprotocol}}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		st.t.Errorf("upgrade: %v", err)
		return
	}
	sc := &studioConn{
		t: st.t, ws: ws, header: r.Header.Clone(), path: r.URL.EscapedPath(),
		frames: make(chan protocol.Frame, 70000), readDone: make(chan struct{}), pongs: make(chan string, 16),
	}
	ws.SetPongHandler(func(s string) error {
		select {
		case sc.pongs <- s:
		default:
		}
		return nil
	})
	go sc.readLoop()
	st.conns <- sc
}

func (sc *studioConn) readLoop() {
	defer close(sc.readDone)
	for {
		sc.gateMu.Lock()
		g := sc.gate
		sc.gateMu.Unlock()
		if g != nil {
			<-g
		}
		mt, data, err := sc.ws.ReadMessage()
		if err != nil {
			sc.readErr = err
			return
		}
		if mt != websocket.TextMessage {
			sc.t.Errorf("worker sent a non-text frame (%d)", mt)
			continue
		}
		f, err := protocol.Decode(data)
		if err != nil {
			sc.t.Errorf("worker sent an undecodable frame %q: %v", data, err)
			continue
		}
		if _, ok := f.(protocol.ReadyForMore); ok {
			sc.t.Error("worker sent readyForMore (I-2)")
		}
		if _, ok := f.(protocol.Heartbeat); ok && sc.autoAck.Load() {
			b, _ := protocol.Encode(protocol.HeartbeatAck{})
			sc.writeMu.Lock()
			_ = sc.ws.WriteMessage(websocket.TextMessage, b)
			sc.writeMu.Unlock()
		}
		sc.frames <- f
	}
}

func (st *testStudio) serveUpload(w http.ResponseWriter, r *http.Request) {
	st.mu.Lock()
	first := st.uploadFirst
	st.mu.Unlock()
	if first != nil && first(w, r) {
		return
	}
	u := &upload{path: r.URL.EscapedPath(), auth: r.Header.Get("Authorization")}
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" {
		st.t.Errorf("upload Content-Type %q", r.Header.Get("Content-Type"))
		http.Error(w, "bad content type", 400)
		return
	}
	mr := multipart.NewReader(r.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			// The worker went away mid-body; nothing to record.
			return
		}
		u.parts = append(u.parts, p.FormName())
		if p.FormName() == "image" && st.discard.Load() {
			n, _ := io.Copy(io.Discard, p)
			u.filename, u.ctype, u.size = p.FileName(), p.Header.Get("Content-Type"), n
			continue
		}
		b, _ := io.ReadAll(p)
		u.size = int64(len(b))
		switch p.FormName() {
		case "prompt":
			u.prompt = string(b)
		case "ext":
			u.ext = string(b)
		case "image":
			u.filename, u.ctype, u.data = p.FileName(), p.Header.Get("Content-Type"), b
		}
	}
	st.mu.Lock()
	st.uploads = append(st.uploads, u)
	n := len(st.uploads)
	hook := st.upload
	st.mu.Unlock()
	if hook != nil {
		hook(n, w, r, u)
		return
	}
	io.WriteString(w, `{"ok":true}`)
}

func (st *testStudio) setUpgrade(f func(n int, w http.ResponseWriter, r *http.Request) bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.upgrade = f
}

func (st *testStudio) setUpload(f func(n int, w http.ResponseWriter, r *http.Request, u *upload)) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.upload = f
}

func (st *testStudio) uploadList() []*upload {
	st.mu.Lock()
	defer st.mu.Unlock()
	return append([]*upload(nil), st.uploads...)
}

// accept waits for the next worker session.
func (st *testStudio) accept(t *testing.T) *studioConn {
	t.Helper()
	select {
	case sc := <-st.conns:
		t.Cleanup(func() { sc.ws.Close() })
		return sc
	case <-time.After(waitLimit):
		t.Fatal("no worker session arrived")
		return nil
	}
}

// next returns the next frame from the worker.
func (sc *studioConn) next(t *testing.T) protocol.Frame {
	t.Helper()
	select {
	case f := <-sc.frames:
		return f
	case <-sc.readDone:
		// Drain what arrived before the end.
		select {
		case f := <-sc.frames:
			return f
		default:
		}
		t.Fatalf("worker session ended while waiting for a frame: %v", sc.readErr)
	case <-time.After(waitLimit):
		t.Fatal("no frame from the worker")
	}
	return nil
}

// nextOf returns the next frame of type T, skipping heartbeats and log
// batches (which the pumps send at their own pace).
func nextOf[T protocol.Frame](t *testing.T, sc *studioConn) T {
	t.Helper()
	for {
		f := sc.next(t)
		if v, ok := f.(T); ok {
			return v
		}
		switch f.(type) {
		case protocol.Heartbeat, protocol.LogBatch:
			continue
		}
		var want T
		t.Fatalf("got %s frame %+v, want %s", protocol.TypeOf(f), f, protocol.TypeOf(want))
	}
}

func (sc *studioConn) send(t *testing.T, f protocol.Frame) {
	t.Helper()
	b, err := protocol.Encode(f)
	if err != nil {
		t.Fatal(err)
	}
	sc.sendRaw(t, websocket.TextMessage, b)
}

func (sc *studioConn) sendRaw(t *testing.T, mt int, b []byte) {
	t.Helper()
	sc.writeMu.Lock()
	defer sc.writeMu.Unlock()
	if err := sc.ws.WriteMessage(mt, b); err != nil {
		t.Fatalf("studio write: %v", err)
	}
}

// roundTrip sends a ping and waits for its pong: every frame the studio sent
// before it has been read by the worker.
func (sc *studioConn) roundTrip(t *testing.T, tag string) {
	t.Helper()
	if err := sc.ws.WriteControl(websocket.PingMessage, []byte(tag), time.Now().Add(waitLimit)); err != nil {
		t.Fatalf("ping: %v", err)
	}
	for {
		select {
		case got := <-sc.pongs:
			if got == tag {
				return
			}
		case <-time.After(waitLimit):
			t.Fatalf("no pong for %q", tag)
		}
	}
}

// welcome consumes the hello and answers welcome.
func (sc *studioConn) welcome(t *testing.T) protocol.Hello {
	t.Helper()
	f := sc.next(t)
	h, ok := f.(protocol.Hello)
	if !ok {
		t.Fatalf("first frame is %s, want hello", protocol.TypeOf(f))
	}
	sc.send(t, protocol.Welcome{WorkerID: testWorker, ServerTime: "2026-06-11T09:13:58.204Z"})
	return h
}

// waitClosed waits until the worker's side of the session has gone.
func (sc *studioConn) waitClosed(t *testing.T) error {
	t.Helper()
	select {
	case <-sc.readDone:
		return sc.readErr
	case <-time.After(waitLimit):
		t.Fatal("worker did not close the session")
		return nil
	}
}

// drop cuts the TCP connection without a close frame.
func (sc *studioConn) drop() { sc.ws.UnderlyingConn().Close() }

// fakeRunner is the job runner's place in these tests: function fields.
type fakeRunner struct {
	admit func(*protocol.JobOfferClaim) error
	run   func(ctx context.Context, c *protocol.JobOfferClaim, rep Reporter)
	// runOutcome, if set, runs the job instead of run and says how it
	// ended.
	runOutcome func(ctx context.Context, c *protocol.JobOfferClaim, rep Reporter) Outcome
	started    chan string
	ended      chan string
	admits     atomic.Int32
}

func newRunner() *fakeRunner {
	return &fakeRunner{started: make(chan string, 100), ended: make(chan string, 100)}
}

func (r *fakeRunner) Admit(c *protocol.JobOfferClaim) error {
	r.admits.Add(1)
	if r.admit != nil {
		return r.admit(c)
	}
	return nil
}

func (r *fakeRunner) RunJob(ctx context.Context, c *protocol.JobOfferClaim, rep Reporter) Outcome {
	r.started <- c.JobID
	defer func() { r.ended <- c.JobID }()
	if r.runOutcome != nil {
		return r.runOutcome(ctx, c, rep)
	}
	if r.run != nil {
		r.run(ctx, c, rep)
	}
	return Outcome{Reported: rep.(*reporter).isReported()}
}

func waitFor[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitLimit):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

// eventually polls cond against a deadline, for state with no event to
// wait on (Status).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond) // polling step, not a wait for an event
	}
}

func testCaps() protocol.WorkerCapabilities {
	return protocol.WorkerCapabilities{
		MachineName: "render-07", Username: "ops", AgentVersion: "0.1.0", Engine: "multi",
		VramTotalGb: 24, VramThresholdGb: 12, AutoStart: true,
		SupportedModels: []string{"synthetic"}, TaskKinds: []protocol.TaskKind{protocol.KindLLM},
		SupportedModelsPerKind: map[protocol.TaskKind][]string{protocol.KindLLM: {"synthetic"}},
	}
}

// worker is a Client under test with its Run goroutine.
type worker struct {
	c      *Client
	runner *fakeRunner
	logs   *syncBuffer
	queue  *logship.Queue
	cancel context.CancelFunc
	done   chan error
	// outcomes gets what Config.JobDone is called with.
	outcomes chan Outcome
}

func testConfig(st *testStudio, r *fakeRunner, logs *syncBuffer) Config {
	return Config{
		BaseURL:           st.srv.URL + "/",
		WorkerID:          testWorker,
		AuthToken:         secret.New(testToken),
		Capabilities:      testCaps,
		Jobs:              r,
		Logger:            hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Trace}),
		HeartbeatInterval: time.Hour, // first heartbeat only, unless a test wants more
		LogFlushInterval:  time.Hour,
		ReadIdleTimeout:   time.Minute,
		BackoffBase:       time.Millisecond,
		BackoffMax:        5 * time.Millisecond,
		UploadRetryPause:  time.Millisecond,
	}
}

// startWorker runs a Client; the test's cleanup stops it and checks Run's
// result is nil (tests that expect an error call stop themselves).
func startWorker(t *testing.T, st *testStudio, tweak func(*Config)) *worker {
	t.Helper()
	w := &worker{runner: newRunner(), logs: &syncBuffer{}, done: make(chan error, 1), outcomes: make(chan Outcome, 100)}
	cfg := testConfig(st, w.runner, w.logs)
	cfg.JobDone = func(_ *protocol.JobOfferClaim, out Outcome) {
		select { // JobDone must not block; tests look at the first ones
		case w.outcomes <- out:
		default:
		}
	}
	if tweak != nil {
		tweak(&cfg)
	}
	w.queue = cfg.Logs
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w.c = c
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	go func() { w.done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-w.done:
		case <-time.After(waitLimit):
			t.Error("Run did not return after cancel")
		}
		if strings.Contains(w.logs.String(), testToken) {
			t.Errorf("the auth token appeared in the log:\n%s", w.logs.String())
		}
	})
	return w
}

// result waits for Run to return on its own.
func (w *worker) result(t *testing.T) error {
	t.Helper()
	select {
	case err := <-w.done:
		w.done <- err // keep it for cleanup
		return err
	case <-time.After(waitLimit):
		t.Fatal("Run did not return")
		return nil
	}
}

func llmClaim(id string) protocol.JobOfferClaim {
	var c protocol.JobOfferClaim
	raw := fmt.Sprintf(`{"jobId":%q,"gameId":"g-elements","assetName":"g-elements/dialogue/elder-line","model":"qwen3-4b","vramGbEstimate":6,
		"task":{"kind":"llm","messages":[{"role":"user","content":"Say hello"}],"maxTokens":64},
		"modelSource":{"engine":"synthetic","files":[],"cliDefaults":{"cfgScale":1,"steps":1,"width":1,"height":1}}}`, id)
	if err := json.Unmarshal([]byte(raw), &c); err != nil {
		panic(err)
	}
	return c
}

func offer(id string) protocol.Offer { return protocol.Offer{Claim: llmClaim(id)} }

var errTest = errors.New("test")

// waitIdle waits until the job slot is free (released after RunJob
// returns and currentJobId is cleared).
func (w *worker) waitIdle(t *testing.T) {
	t.Helper()
	eventually(t, "the job slot to be released", func() bool { return !w.c.busy.Load() })
}

// syncBuffer is a concurrency-safe log sink.
type syncBuffer = syncbuf.Buffer
