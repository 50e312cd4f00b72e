package models

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// origin is a loopback HTTP server whose handlers the tests choose, and
// which records every request it gets.
type origin struct {
	*httptest.Server
	mux *http.ServeMux

	mu   sync.Mutex
	reqs []seenReq // guarded by mu
}

type seenReq struct {
	Path  string
	Range string
}

func newOrigin(t testing.TB) *origin {
	t.Helper()
	o := &origin{mux: http.NewServeMux()}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.reqs = append(o.reqs, seenReq{Path: r.URL.Path, Range: r.Header.Get("Range")})
		o.mu.Unlock()
		o.mux.ServeHTTP(w, r)
	}))
	t.Cleanup(o.Close)
	return o
}

// serveBytes serves b at path with Range support, like a CDN.
func (o *origin) serveBytes(path string, b []byte) {
	o.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
	})
}

// requests returns the requests seen for path.
func (o *origin) requests(path string) []seenReq {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []seenReq
	for _, r := range o.reqs {
		if r.Path == path {
			out = append(out, r)
		}
	}
	return out
}

func (o *origin) total() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.reqs)
}

// testLoopback is the allowance every test server needs: they all listen
// on loopback, which the store refuses by default.
var testLoopback = []string{"127.0.0.0/8", "::1"}

// testConfig returns a Config rooted in a temporary directory, allowed to
// fetch from loopback, with a transport that uses no proxy.
func testConfig(t testing.TB) Config {
	t.Helper()
	return Config{
		Root:        t.TempDir(),
		HTTPClient:  &http.Client{Transport: &http.Transport{}},
		Allow:       testLoopback,
		IdleTimeout: 10 * time.Second, // generous: only the stall tests rely on it
	}
}

// openStore opens a Store whose idle connections are closed when the test
// ends.
func openStore(t testing.TB, cfg Config) *Store {
	t.Helper()
	s, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(s.CloseIdleConnections)
	return s
}

// randomBytes returns n reproducible pseudo-random bytes.
func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// dirFiles lists the names of the regular files under dir, recursively,
// relative to dir; a missing dir lists nothing.
func dirFiles(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if os.IsNotExist(err) {
			return filepath.SkipDir
		}
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	sort.Strings(out)
	return out
}

// cacheFiles lists the data files of the cache (the store's own .stoker
// bookkeeping left out).
func cacheFiles(t testing.TB, root string) []string {
	t.Helper()
	var out []string
	for _, f := range dirFiles(t, root) {
		if !strings.HasPrefix(f, metaDir+string(filepath.Separator)) {
			out = append(out, f)
		}
	}
	return out
}

// logEvents returns a logger and a channel that receives every message it
// logs, for tests that wait on a logged event.
func logEvents(t testing.TB) (hclog.Logger, <-chan string) {
	t.Helper()
	ch := make(chan string, 1024)
	l := hclog.NewInterceptLogger(&hclog.LoggerOptions{Output: io.Discard, Level: hclog.Trace})
	l.RegisterSink(&chanSink{ch: ch})
	return l, ch
}

// chanSink sends each message on ch, dropping it when ch is full.
type chanSink struct{ ch chan string }

func (s *chanSink) Accept(_ string, _ hclog.Level, msg string, _ ...interface{}) {
	select {
	case s.ch <- msg:
	default:
	}
}

// waitLog waits until msg is logged or the deadline passes.
func waitLog(t testing.TB, ch <-chan string, msg string, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case m := <-ch:
			if m == msg {
				return
			}
		case <-deadline:
			t.Fatalf("no %q logged within %s", msg, d)
		}
	}
}

// stderrLogger logs to stderr, for helper processes.
func stderrLogger() hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Output: os.Stderr, Level: hclog.Info})
}
