package localapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"net"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestStatusJSON(t *testing.T) {
	want := richSnapshot()
	ts := startServer(t, &fakeSource{snap: want}, nil)
	code, h, body := ts.get(t, "/v1/status")
	if code != http.StatusOK {
		t.Fatalf("GET /v1/status = %d %s", code, body)
	}
	if ct := h.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}

	// The snapshot comes back whole.
	var got statusBody
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Snapshot, want) {
		t.Errorf("snapshot round trip:\n got %+v\nwant %+v", got.Snapshot, want)
	}
	if got.UptimeSeconds != 90 {
		t.Errorf("uptimeSeconds = %v, want 90", got.UptimeSeconds)
	}
	if !got.Now.Equal(fixedNow) {
		t.Errorf("now = %v, want %v", got.Now, fixedNow)
	}

	// The names are the documented camelCase ones.
	var shape map[string]any
	if err := json.Unmarshal([]byte(body), &shape); err != nil {
		t.Fatal(err)
	}
	keys := func(m any) []string {
		var ks []string
		for k := range m.(map[string]any) {
			ks = append(ks, k)
		}
		slices.Sort(ks)
		return ks
	}
	tests := []struct {
		name string
		obj  any
		want []string
	}{
		{"top", shape, []string{"advertised", "counters", "job", "now", "plugins", "session", "started", "uptimeSeconds", "version"}},
		{"session", shape["session"], []string{"attempt", "connected", "currentJobId", "lastError", "paused", "serverTime", "sessions", "since", "state", "welcomed", "workerId"}},
		{"job", shape["job"], []string{"engine", "id", "kind", "lastProgress", "model", "phase", "source", "started", "step", "total", "unit"}},
		{"plugin", shape["plugins"].([]any)[0], []string{"crashes", "device", "engines", "kinds", "lastError", "lastExit", "lastExitStatus", "name", "path", "pid", "ready", "restarts", "since", "state", "version"}},
		{"quarantined plugin", shape["plugins"].([]any)[1], []string{"crashes", "device", "engines", "kinds", "lastError", "lastExitStatus", "name", "path", "pid", "quarantinedUntil", "ready", "restarts", "since", "state", "version"}},
		{"device", shape["plugins"].([]any)[0].(map[string]any)["device"], []string{"backend", "memoryFree", "memoryTotal", "name"}},
		{"counters", shape["counters"], []string{"jobs", "pluginRestarts", "uploadBytes"}},
		{"jobs", shape["counters"].(map[string]any)["jobs"], []string{"completed", "failedFinal", "failedRetryable", "rejected"}},
		{"advertised", shape["advertised"], []string{"kinds", "models"}},
	}
	for _, tt := range tests {
		if got := keys(tt.obj); !slices.Equal(got, tt.want) {
			t.Errorf("%s keys = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestStatusJSONIdle: an idle node says job null and leaves zero times
// out rather than writing year one.
func TestStatusJSONIdle(t *testing.T) {
	ts := startServer(t, nil, nil)
	_, _, body := ts.get(t, "/v1/status")
	var shape map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &shape); err != nil {
		t.Fatal(err)
	}
	if got := string(shape["job"]); got != "null" {
		t.Errorf("job = %s, want null", got)
	}
	if strings.Contains(body, "0001-01-01") {
		t.Errorf("zero time written: %s", body)
	}
	if _, ok := shape["started"]; ok {
		t.Errorf("started present on a zero snapshot")
	}
}

func TestPauseResumeRoundTrip(t *testing.T) {
	src := &fakeSource{}
	ts := startServer(t, src, nil)
	for _, step := range []struct {
		path string
		want bool
	}{
		{"/v1/pause", true},
		{"/v1/pause", true}, // twice is fine
		{"/v1/resume", false},
		{"/v1/pause", true},
		{"/v1/resume", false},
	} {
		code, h, body := ts.do(t, http.MethodPost, step.path, jsonHeader(), "")
		if code != http.StatusOK {
			t.Fatalf("POST %s = %d %s", step.path, code, body)
		}
		if ct := h.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q", ct)
		}
		var got pauseBody
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatalf("POST %s: %v in %q", step.path, err, body)
		}
		if got.Paused != step.want || ts.ctl.Paused() != step.want {
			t.Errorf("POST %s: answer paused=%v, flag %v; want %v", step.path, got.Paused, ts.ctl.Paused(), step.want)
		}
	}
	if n := ts.ctl.calls.Load(); n != 5 {
		t.Errorf("%d SetPaused calls, want 5", n)
	}
	// A JSON body, and a charset parameter, are accepted too.
	h := http.Header{"Content-Type": {"application/json; charset=utf-8"}, "Authorization": {"Bearer " + testToken}}
	if code, _, body := ts.do(t, http.MethodPost, "/v1/pause", h, `{"reason":"maintenance"}`); code != http.StatusOK {
		t.Errorf("POST with a JSON body = %d %s", code, body)
	}
}

// TestPostGuard: every request a hostile page (or a confused caller)
// could send is refused with a clear error, and the flag is untouched.
func TestPostGuard(t *testing.T) {
	ts := startServer(t, nil, func(c *Config) { c.AllowedHosts = []string{"node1.example"} })
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	tests := []struct {
		name     string
		header   http.Header
		body     string
		wantCode int
		wantErr  string
	}{
		{"no content type", nil, "", http.StatusUnsupportedMediaType, "application/json"},
		{"html form", hdr("Content-Type", "application/x-www-form-urlencoded"), "paused=1", http.StatusUnsupportedMediaType, "application/json"},
		{"multipart form", hdr("Content-Type", "multipart/form-data; boundary=x"), "--x--", http.StatusUnsupportedMediaType, "application/json"},
		{"text/plain (a no-preflight fetch)", hdr("Content-Type", "text/plain"), "{}", http.StatusUnsupportedMediaType, "application/json"},
		{"json-ish prefix", hdr("Content-Type", "application/jsonx"), "{}", http.StatusUnsupportedMediaType, "application/json"},
		{"malformed content type", hdr("Content-Type", "application/json; ;;="), "{}", http.StatusUnsupportedMediaType, "application/json"},
		{"cross-site fetch", hdr("Content-Type", "application/json", "Sec-Fetch-Site", "cross-site"), "{}", http.StatusForbidden, "cross-origin"},
		{"foreign origin", hdr("Content-Type", "application/json", "Origin", "http://evil.example"), "{}", http.StatusForbidden, "cross-origin"},
		{"rebound host name", hdr("Content-Type", "application/json", "Host", "evil.example:8710"), "{}", http.StatusForbidden, "not allowed"},
		{"rebound name, same-origin fetch", hdr("Content-Type", "application/json", "Host", "evil.example", "Origin", "http://evil.example", "Sec-Fetch-Site", "same-origin"), "{}", http.StatusForbidden, "not allowed"},
		{"body not JSON", jsonHeader(), "paused=1", http.StatusBadRequest, "not JSON"},
		{"body too large", jsonHeader(), `"` + strings.Repeat("a", maxPostBody) + `"`, http.StatusRequestEntityTooLarge, "bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := ts.ctl.calls.Load()
			code, h, body := ts.do(t, http.MethodPost, "/v1/pause", tt.header, tt.body)
			if code != tt.wantCode {
				t.Errorf("code = %d, want %d (%s)", code, tt.wantCode, body)
			}
			var e errorBody
			if err := json.Unmarshal([]byte(body), &e); err != nil || !strings.Contains(e.Error, tt.wantErr) {
				t.Errorf("body = %q (%v), want a JSON error naming %q", body, err, tt.wantErr)
			}
			if ct := h.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			if n := ts.ctl.calls.Load(); n != before || ts.ctl.Paused() {
				t.Errorf("refused request reached Controls (%d calls, paused %v)", n-before, ts.ctl.Paused())
			}
		})
	}

	// What a legitimate caller sends passes: IP literal, localhost, an
	// allowed name, and the page's own same-origin fetch.
	auth := "Bearer " + testToken
	ok := []http.Header{
		jsonHeader(),
		hdr("Content-Type", "application/json", "Authorization", auth, "Host", "localhost:8710"),
		hdr("Content-Type", "application/json", "Authorization", auth, "Host", "NODE1.example:8710"),
		hdr("Content-Type", "application/json", "Authorization", auth, "Host", "[::1]:8710"),
		hdr("Content-Type", "application/json", "Authorization", auth, "Sec-Fetch-Site", "same-origin", "Origin", ts.base),
	}
	for i, h := range ok {
		if code, _, body := ts.do(t, http.MethodPost, "/v1/resume", h, "{}"); code != http.StatusOK {
			t.Errorf("legitimate request %d (%v) = %d %s", i, h, code, body)
		}
	}
}

func TestMethodsAndPaths(t *testing.T) {
	ts := startServer(t, &fakeSource{snap: richSnapshot()}, nil)
	tests := []struct {
		method, path string
		wantCode     int
		wantAllow    string
	}{
		{http.MethodGet, "/v1/pause", http.StatusMethodNotAllowed, "POST"},
		{http.MethodGet, "/v1/resume", http.StatusMethodNotAllowed, "POST"},
		{http.MethodPut, "/v1/pause", http.StatusMethodNotAllowed, "POST"},
		{http.MethodPost, "/v1/status", http.StatusMethodNotAllowed, "GET, HEAD"},
		{http.MethodPost, "/metrics", http.StatusMethodNotAllowed, "GET, HEAD"},
		{http.MethodDelete, "/", http.StatusMethodNotAllowed, "GET, HEAD"},
		{http.MethodGet, "/nope", http.StatusNotFound, ""},
		{http.MethodGet, "/v1/status/extra", http.StatusNotFound, ""},
		{http.MethodGet, "/../../etc/passwd", http.StatusNotFound, ""},
		{http.MethodHead, "/metrics", http.StatusOK, ""},
		{http.MethodGet, "/", http.StatusOK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			code, h, _ := ts.do(t, tt.method, tt.path, jsonHeader(), "")
			if code != tt.wantCode {
				t.Errorf("code = %d, want %d", code, tt.wantCode)
			}
			if got := h.Get("Allow"); got != tt.wantAllow {
				t.Errorf("Allow = %q, want %q", got, tt.wantAllow)
			}
		})
	}
	if ts.ctl.calls.Load() != 0 {
		t.Error("a refused method reached Controls")
	}
}

func TestStatusPage(t *testing.T) {
	snap := richSnapshot()
	snap.Session.Paused = true
	snap.Plugins[1].Name = `<script>alert("x")</script>`
	snap.Plugins[1].LastError = `boom & "quoted" <b>bold</b>`
	snap.Session.LastError = "<img src=x onerror=alert(1)>"
	snap.Session.Attempt = 2
	ts := startServer(t, &fakeSource{snap: snap}, nil)
	code, h, body := ts.get(t, "/")
	if code != http.StatusOK {
		t.Fatalf("GET / = %d", code)
	}
	if ct := h.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy = %q", csp)
	}
	for _, raw := range []string{"<script>alert(", "<b>bold</b>", "<img src=x"} {
		if strings.Contains(body, raw) {
			t.Errorf("page carries unescaped %q", raw)
		}
	}
	for _, want := range []string{
		html.EscapeString(`<script>alert("x")</script>`),
		html.EscapeString(`boom & "quoted" <b>bold</b>`),
		html.EscapeString("<img src=x onerror=alert(1)>"),
		`<meta http-equiv="refresh"`,
		"llamacpp-plugin", "quarantined", "welcomed", "job-42", "tiny-llama",
		`<progress max="32" value="8">`, "8/32 tokens (25%)",
		"paused: offers are rejected", `data-action="resume"`,
		"80.0 GiB", "signal: killed", "attempt 2",
		"<th>completed</th><td>10</td>", "1.0 MiB",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// No external asset: every src/href stays on this server.
	for _, attr := range []string{`src="http`, `href="http`, `src="//`, `href="//`} {
		if strings.Contains(body, attr) {
			t.Errorf("page loads an external asset (%s)", attr)
		}
	}
}

func TestStatusPageIdle(t *testing.T) {
	ts := startServer(t, nil, nil)
	code, _, body := ts.get(t, "/")
	if code != http.StatusOK {
		t.Fatalf("GET / = %d", code)
	}
	for _, want := range []string{"idle", "no engine plugins", "nothing: no plugin is ready", `data-action="pause"`, "(not registered)"} {
		if !strings.Contains(body, want) {
			t.Errorf("idle page lacks %q", want)
		}
	}
	if strings.Contains(body, "0001") || strings.Contains(body, "00:00:00") {
		t.Error("idle page shows a zero time")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	good := Config{Addr: "127.0.0.1:0", Source: &fakeSource{}, Controls: &fakeControls{}, TokenFile: tokenFile(t)}
	tests := []struct {
		name string
		mod  func(*Config)
	}{
		{"no addr", func(c *Config) { c.Addr = "" }},
		{"no source", func(c *Config) { c.Source = nil }},
		{"no controls", func(c *Config) { c.Controls = nil }},
		{"no token file", func(c *Config) { c.TokenFile = "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.mod(&cfg)
			if _, err := New(cfg); err == nil {
				t.Error("New accepted a bad config")
			}
		})
	}
	s, err := New(good)
	if err != nil {
		t.Fatalf("New(good) = %v", err)
	}
	if err := s.Close(); err != nil { // never started
		t.Errorf("Close before Start = %v", err)
	}
	if err := s.Start(context.Background()); err == nil {
		t.Error("Start after Close succeeded")
	}
}

func TestStartErrors(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	s, err := New(Config{Addr: l.Addr().String(), Source: &fakeSource{}, Controls: &fakeControls{}, TokenFile: tokenFile(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Start(context.Background()); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("Start on a taken port = %v, want EADDRINUSE", err)
	}

	ts := startServer(t, nil, nil)
	if err := ts.srv.Start(context.Background()); err == nil {
		t.Error("second Start succeeded")
	}
}

// TestCloseTwice: Close stops serving, and a second Close returns the
// same result without blocking.
func TestCloseTwice(t *testing.T) {
	s, err := New(Config{Addr: "127.0.0.1:0", Source: &fakeSource{}, Controls: &fakeControls{}, TokenFile: tokenFile(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	addr := s.Addr().String()
	if err := s.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Error("still accepting after Close")
	}
}

// TestCloseLetsRequestFinish: a request in flight when Close is called
// gets its whole answer; Close returns after it.
func TestCloseLetsRequestFinish(t *testing.T) {
	src := &fakeSource{snap: richSnapshot(), block: make(chan struct{}), entered: make(chan struct{}, 1)}
	s, err := New(Config{Addr: "127.0.0.1:0", Source: src, Controls: &fakeControls{}, TokenFile: tokenFile(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	addr := s.Addr().String()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	type result struct {
		code int
		body statusBody
		err  error
	}
	res := make(chan result, 1)
	go func() {
		var r result
		resp, err := (&http.Client{Transport: tr}).Get("http://" + addr + "/v1/status")
		if err != nil {
			r.err = err
		} else {
			r.code = resp.StatusCode
			r.err = json.NewDecoder(resp.Body).Decode(&r.body)
			resp.Body.Close()
		}
		res <- r
	}()
	<-src.entered // the request is inside the handler
	shutdown := make(chan struct{})
	s.httpSrv.RegisterOnShutdown(func() { close(shutdown) })
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	release := sync.OnceFunc(func() { close(src.block) })
	defer release()
	select {
	case <-shutdown: // Close has begun: the listener is closed
	case err := <-closed:
		t.Fatalf("Close returned (%v) with a request in flight, without a graceful shutdown", err)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Error("still accepting once Close began")
	}
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) with a request in flight", err)
	default:
	}
	release()
	r := <-res
	if r.err != nil || r.code != http.StatusOK || r.body.Version != "1.2.3" {
		t.Errorf("in-flight request: code %d, version %q, err %v", r.code, r.body.Version, r.err)
	}
	if err := <-closed; err != nil {
		t.Errorf("Close = %v", err)
	}
}

// TestCloseCutsStuckRequest: a request that outlives ShutdownTimeout has
// its connection cut, and Close still returns.
func TestCloseCutsStuckRequest(t *testing.T) {
	src := &fakeSource{block: make(chan struct{}), entered: make(chan struct{}, 1)}
	s, err := New(Config{Addr: "127.0.0.1:0", Source: src, Controls: &fakeControls{}, TokenFile: tokenFile(t), ShutdownTimeout: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	got := make(chan error, 1)
	go func() {
		resp, err := (&http.Client{Transport: tr}).Get("http://" + s.Addr().String() + "/metrics")
		if err == nil {
			resp.Body.Close()
		}
		got <- err
	}()
	<-src.entered
	if err := s.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	if err := <-got; err == nil {
		t.Error("stuck request got an answer; want its connection cut")
	}
	close(src.block) // let the handler goroutine end
}

// TestConcurrentUse runs scrapes, page loads and pause flips together
// while the source changes (meaningful under -race).
func TestConcurrentUse(t *testing.T) {
	src := &fakeSource{snap: richSnapshot()}
	ts := startServer(t, src, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 10 {
				path := []string{"/", "/v1/status", "/metrics"}[(i+j)%3]
				method, body := http.MethodGet, ""
				if (i+j)%4 == 0 {
					path, method, body = "/v1/pause", http.MethodPost, "{}"
				}
				req, _ := http.NewRequest(method, ts.base+path, strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+testToken)
				resp, err := ts.client.Do(req)
				if err != nil {
					errs <- err
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					errs <- fmt.Errorf("%s %s = %d", method, path, resp.StatusCode)
					return
				}
				s := richSnapshot()
				s.Counters.Jobs.Completed = uint64(i*10 + j)
				src.set(s)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func BenchmarkStatusJSON(b *testing.B) {
	src := &fakeSource{snap: richSnapshot()}
	s, err := New(Config{Addr: "127.0.0.1:0", Source: src, Controls: &fakeControls{}, TokenFile: tokenFile(b)})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	url := "http://" + s.Addr().String() + "/v1/status"
	b.ReportAllocs()
	for b.Loop() {
		resp, err := c.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		var body statusBody
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
	}
}

func BenchmarkPage(b *testing.B) {
	p, err := newPage()
	if err != nil {
		b.Fatal(err)
	}
	snap := richSnapshot()
	var sb strings.Builder
	b.ReportAllocs()
	for b.Loop() {
		sb.Reset()
		if err := p.render(&sb, &snap, fixedNow, "key"); err != nil {
			b.Fatal(err)
		}
	}
}
