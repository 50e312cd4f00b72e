package localapi

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeSource serves a snapshot a test sets; block, when set, is waited on
// inside Snapshot (after entered is signalled) to hold a request in flight.
type fakeSource struct {
	mu      sync.Mutex // guards snap
	snap    Snapshot
	block   chan struct{}
	entered chan struct{}
}

func (f *fakeSource) Snapshot() Snapshot {
	if f.block != nil {
		f.entered <- struct{}{}
		<-f.block
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.snap
}

func (f *fakeSource) set(s Snapshot) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.snap = s
}

// fakeControls is the pause flag, counting the calls that reach it.
type fakeControls struct {
	paused atomic.Bool
	calls  atomic.Int64
}

func (c *fakeControls) SetPaused(p bool) { c.calls.Add(1); c.paused.Store(p) }
func (c *fakeControls) Paused() bool     { return c.paused.Load() }

// fixedNow is the clock every test server runs on.
var fixedNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// testServer is a started server on 127.0.0.1:0 with its own client.
type testServer struct {
	srv    *Server
	src    *fakeSource
	ctl    *fakeControls
	base   string
	client *http.Client
}

// startServer starts a server over src (a fresh fakeSource when nil);
// mod may change the config first. Cleanup closes both ends.
func startServer(t *testing.T, src *fakeSource, mod func(*Config)) *testServer {
	t.Helper()
	if src == nil {
		src = &fakeSource{}
	}
	ctl := &fakeControls{}
	cfg := Config{
		Addr:      "127.0.0.1:0",
		Source:    src,
		Controls:  ctl,
		TokenFile: tokenFile(t),
		Logger:    hclog.New(&hclog.LoggerOptions{Output: testWriter{t}, Level: hclog.Debug}),
		Now:       func() time.Time { return fixedNow },
	}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	ts := &testServer{srv: srv, src: src, ctl: ctl, base: "http://" + srv.Addr().String(), client: &http.Client{Transport: tr}}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("Close = %v", err)
		}
		tr.CloseIdleConnections()
	})
	return ts
}

// do sends a request and returns the status, headers and body.
func (ts *testServer) do(t *testing.T, method, path string, header http.Header, body string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, ts.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if h := header.Get("Host"); h != "" {
		req.Host = h
	}
	resp, err := ts.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func (ts *testServer) get(t *testing.T, path string) (int, http.Header, string) {
	t.Helper()
	return ts.do(t, http.MethodGet, path, nil, "")
}

// testToken is the bearer token of every test server (tokenFile).
const testToken = "test-token-0123456789abcdefghijklmnop"

// tokenFile writes testToken to an owner-only file in a fresh directory.
func tokenFile(tb testing.TB) string {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), TokenFile)
	if err := os.WriteFile(p, []byte(testToken+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

// jsonHeader is what a legitimate pause/resume caller sends.
func jsonHeader() http.Header {
	return http.Header{"Content-Type": {"application/json"}, "Authorization": {"Bearer " + testToken}}
}

// testWriter sends the server's log lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// richSnapshot has every part filled, with values that are easy to check.
func richSnapshot() Snapshot {
	return Snapshot{
		Version: "1.2.3",
		Started: fixedNow.Add(-90 * time.Second),
		Session: Session{
			State: "welcomed", Since: fixedNow.Add(-time.Minute),
			Connected: true, Welcomed: true, WorkerID: "w-7",
			ServerTime: "2026-03-01T11:59:00Z", CurrentJobID: "job-42",
			Sessions: 3,
		},
		Job: &Job{
			ID: "job-42", Model: "tiny-llama", Engine: "llama-cpp", Kind: "llm",
			Phase: "running", Step: 8, Total: 32, Unit: "tokens",
			Started: fixedNow.Add(-5 * time.Second), LastProgress: fixedNow.Add(-time.Second),
		},
		Plugins: []Plugin{
			{
				Name: "llamacpp-plugin", Path: "/opt/stoker/llamacpp-plugin", State: "ready",
				Since: fixedNow.Add(-80 * time.Second), Pid: 4242, Version: "0.3.0",
				Engines: []string{"llama-cpp"}, Kinds: []string{"llm"},
				Restarts: 1, Crashes: 1, LastExit: fixedNow.Add(-81 * time.Second), LastExitStatus: "signal: killed",
				Ready: true, Device: Device{Backend: "cuda", Name: "NVIDIA H100", MemoryTotal: 80 << 30, MemoryFree: 60 << 30},
			},
			{
				Name: "whisper-plugin", Path: "/opt/stoker/whisper-plugin", State: "quarantined",
				Since: fixedNow.Add(-10 * time.Second), Restarts: 2, Crashes: 3,
				LastError: "exit status 2", QuarantinedUntil: fixedNow.Add(50 * time.Second),
			},
		},
		Advertised: Advertised{Kinds: []string{"llm"}, Models: map[string][]string{"llm": {"llama-cpp:*"}}},
		Counters: Counters{
			Jobs:        JobCounters{Completed: 10, FailedRetryable: 2, FailedFinal: 3, Rejected: 4},
			UploadBytes: 1 << 20, PluginRestarts: 3,
		},
	}
}
