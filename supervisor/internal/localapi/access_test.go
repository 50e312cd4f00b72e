package localapi

import (
	"github.com/stokerhq/stoker/internal/syncbuf"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// TestHostCheckOnEveryRoute: a page that rebinds its own name to
// 127.0.0.1 (DNS rebinding) is same-origin with the API and could read
// every GET route; the Host check refuses it everywhere, before any data.
func TestHostCheckOnEveryRoute(t *testing.T) {
	ts := startServer(t, &fakeSource{snap: richSnapshot()}, nil)
	for _, path := range []string{"/", "/v1/status", "/metrics"} {
		code, _, body := ts.do(t, http.MethodGet, path, http.Header{"Host": {"evil.example:8710"}}, "")
		if code != http.StatusForbidden {
			t.Errorf("GET %s with a rebound Host = %d, want 403", path, code)
		}
		if strings.Contains(body, "llamacpp-plugin") || strings.Contains(body, "job-42") {
			t.Errorf("GET %s with a rebound Host leaked the status: %.200s", path, body)
		}
	}
}

// TestPostNeedsToken: pause and resume need the bearer token, even from
// loopback, so another user on the node cannot pause it with curl.
func TestPostNeedsToken(t *testing.T) {
	ts := startServer(t, nil, nil)
	code, _, body := ts.do(t, http.MethodPost, "/v1/pause", http.Header{"Content-Type": {"application/json"}}, "{}")
	if code != http.StatusUnauthorized {
		t.Errorf("POST /v1/pause without a token = %d %s, want 401", code, body)
	}
	if ts.ctl.calls.Load() != 0 {
		t.Error("a POST without a token reached Controls")
	}
}

// TestRemotePeerNeedsTokenEverywhere: a peer on another machine (the API
// bound off loopback) gets nothing, GET or POST, without the token.
func TestRemotePeerNeedsTokenEverywhere(t *testing.T) {
	ts := startServer(t, &fakeSource{snap: richSnapshot()}, nil)
	h := ts.srv.httpSrv.Handler
	for _, tt := range []struct{ method, path string }{
		{http.MethodGet, "/"}, {http.MethodGet, "/v1/status"}, {http.MethodGet, "/metrics"}, {http.MethodPost, "/v1/pause"},
	} {
		req := httptest.NewRequest(tt.method, "http://192.0.2.10:8710"+tt.path, strings.NewReader("{}"))
		req.RemoteAddr = "192.0.2.7:40000"
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("%s %s from a remote peer without a token = %d, want 401", tt.method, tt.path, rec.Code)
		}
	}
	if ts.ctl.calls.Load() != 0 || ts.ctl.Paused() {
		t.Error("a remote peer without a token paused the node")
	}
}

// TestTokenAndPageKey: the file's token opens everything from anywhere;
// the status page served to this machine carries a different key that
// works for its buttons from this machine only.
func TestTokenAndPageKey(t *testing.T) {
	ts := startServer(t, &fakeSource{snap: richSnapshot()}, nil)
	code, _, page := ts.get(t, "/")
	if code != http.StatusOK {
		t.Fatalf("GET / = %d", code)
	}
	key := pageKeyOf(t, page)
	if key == "" || key == testToken || strings.Contains(page, testToken) {
		t.Fatalf("page key %q: want one, and never the file's token", key)
	}
	post := func(auth string) int {
		code, h, body := ts.do(t, http.MethodPost, "/v1/pause", http.Header{"Content-Type": {"application/json"}, "Authorization": {auth}}, "{}")
		if code == http.StatusUnauthorized && !strings.Contains(h.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("401 without a WWW-Authenticate: Bearer header (%s)", body)
		}
		return code
	}
	if code := post("Bearer " + key); code != http.StatusOK {
		t.Errorf("POST with the page's key from loopback = %d, want 200", code)
	}
	if code := post("Bearer " + testToken); code != http.StatusOK {
		t.Errorf("POST with the token = %d, want 200", code)
	}
	for _, bad := range []string{"Bearer wrong", "Bearer " + testToken + "x", "Basic " + testToken, testToken, "Bearer "} {
		if code := post(bad); code != http.StatusUnauthorized {
			t.Errorf("POST with Authorization %q = %d, want 401", bad, code)
		}
	}

	// From another machine: the token works on every route, the page
	// key on none, and the page it gets carries no key.
	remote := func(method, path, auth string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, "http://192.0.2.10:8710"+path, strings.NewReader("{}"))
		req.RemoteAddr = "192.0.2.7:40000"
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", auth)
		rec := httptest.NewRecorder()
		ts.srv.httpSrv.Handler.ServeHTTP(rec, req)
		return rec
	}
	for _, path := range []string{"/", "/v1/status", "/metrics"} {
		if rec := remote(http.MethodGet, path, "Bearer "+testToken); rec.Code != http.StatusOK {
			t.Errorf("remote GET %s with the token = %d, want 200", path, rec.Code)
		}
	}
	if rec := remote(http.MethodGet, "/", "Bearer "+testToken); pageKeyOf(t, rec.Body.String()) != "" {
		t.Error("the page served to another machine carries the page key")
	}
	if rec := remote(http.MethodPost, "/v1/resume", "Bearer "+key); rec.Code != http.StatusUnauthorized {
		t.Errorf("remote POST with the page key = %d, want 401", rec.Code)
	}
	if rec := remote(http.MethodPost, "/v1/resume", "Bearer "+testToken); rec.Code != http.StatusOK || ts.ctl.Paused() {
		t.Errorf("remote POST with the token = %d (paused %v), want 200 and resumed", rec.Code, ts.ctl.Paused())
	}
}

// pageKeyOf extracts the key a status page carries ("" for none).
func pageKeyOf(t *testing.T, page string) string {
	t.Helper()
	const attr = `<body data-key="`
	i := strings.Index(page, attr)
	if i < 0 {
		t.Fatalf("page has no %s", attr)
	}
	rest := page[i+len(attr):]
	return rest[:strings.IndexByte(rest, '"')]
}

func TestTokenFile(t *testing.T) {
	t.Run("created owner-only, then reused", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), TokenFile)
		tok, err := loadToken(p)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 || len(tok) != 64 {
			t.Errorf("mode %v, token length %d; want 0600 and 64 hex digits", fi.Mode().Perm(), len(tok))
		}
		again, err := loadToken(p)
		if err != nil || again != tok {
			t.Errorf("second load = %q, %v; want the same token", again, err)
		}
	})
	tests := []struct {
		name  string
		setup func(dir, p string) error
		want  string
	}{
		{"readable by others", func(dir, p string) error { return os.WriteFile(p, []byte(testToken), 0o644) }, "chmod 600"},
		{"writable by group", func(dir, p string) error {
			if err := os.WriteFile(p, []byte(testToken), 0o600); err != nil {
				return err
			}
			return os.Chmod(p, 0o620)
		}, "chmod 600"},
		{"a symlink", func(dir, p string) error {
			target := filepath.Join(dir, "elsewhere")
			if err := os.WriteFile(target, []byte(testToken), 0o600); err != nil {
				return err
			}
			return os.Symlink(target, p)
		}, "symlink"},
		{"a dangling symlink", func(dir, p string) error { return os.Symlink(filepath.Join(dir, "nothing"), p) }, "symlink"},
		{"a directory", func(dir, p string) error { return os.Mkdir(p, 0o700) }, "not a regular file"},
		{"too short", func(dir, p string) error { return os.WriteFile(p, []byte("short\n"), 0o600) }, "shorter"},
		{"with a space", func(dir, p string) error { return os.WriteFile(p, []byte(testToken+" x"), 0o600) }, "space"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, TokenFile)
			if err := tt.setup(dir, p); err != nil {
				t.Fatal(err)
			}
			_, err := New(Config{Addr: "127.0.0.1:0", Source: &fakeSource{}, Controls: &fakeControls{}, TokenFile: p})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New = %v, want an error naming %q", err, tt.want)
			}
		})
	}
}

// TestRefusalsLogRateLimited: a flood of refused requests costs one log
// line per refusalLogEvery, which counts the rest.
func TestRefusalsLogRateLimited(t *testing.T) {
	var buf syncBuffer
	now := fixedNow
	var clock sync.Mutex
	ts := startServer(t, nil, func(c *Config) {
		c.Logger = hclog.New(&hclog.LoggerOptions{Output: &buf, Level: hclog.Debug})
		c.Now = func() time.Time { clock.Lock(); defer clock.Unlock(); return now }
	})
	evil := http.Header{"Host": {"evil.example"}}
	for range 50 {
		if code, _, _ := ts.do(t, http.MethodGet, "/v1/status", evil, ""); code != http.StatusForbidden {
			t.Fatalf("code %d, want 403", code)
		}
	}
	clock.Lock()
	now = now.Add(refusalLogEvery)
	clock.Unlock()
	ts.do(t, http.MethodGet, "/metrics", evil, "")
	lines := strings.Count(buf.String(), "refused a local API request")
	if lines != 2 || !strings.Contains(buf.String(), "refused_since_last_line=49") {
		t.Errorf("%d log lines for 51 refusals, want 2, the second counting 49:\n%s", lines, buf.String())
	}
}

// TestWarnsOffLoopback: bound off loopback, the start says that other
// machines need the token. (It binds 0.0.0.0 for a moment; no traffic
// leaves loopback.)
func TestWarnsOffLoopback(t *testing.T) {
	var buf syncBuffer
	ts := startServer(t, nil, func(c *Config) {
		c.Addr = "0.0.0.0:0"
		c.Logger = hclog.New(&hclog.LoggerOptions{Output: &buf})
	})
	ts.srv.Close()
	if !strings.Contains(buf.String(), "[WARN]") || !strings.Contains(buf.String(), "bound off loopback") {
		t.Errorf("no warning at start off loopback:\n%s", buf.String())
	}
	buf2 := syncBuffer{}
	ts2 := startServer(t, nil, func(c *Config) { c.Logger = hclog.New(&hclog.LoggerOptions{Output: &buf2}) })
	ts2.srv.Close()
	if strings.Contains(buf2.String(), "bound off loopback") {
		t.Errorf("warned on loopback:\n%s", buf2.String())
	}
}

// syncBuffer is a concurrency-safe log sink.
type syncBuffer = syncbuf.Buffer
