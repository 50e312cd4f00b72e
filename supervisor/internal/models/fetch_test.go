package models

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestFetchDownloadsOnceThenReuses(t *testing.T) {
	o := newOrigin(t)
	data := randomBytes(3<<20+17, 1)
	o.serveBytes("/m/weights.gguf", data)
	s := openStore(t, testConfig(t))

	f := File{Role: "model", URL: o.URL + "/m/weights.gguf", Filename: "weights.gguf",
		ApproxBytes: uint64(len(data)), SHA256: strings.ToUpper(sha(data))}
	for i := 0; i < 2; i++ {
		got, err := s.Fetch(context.Background(), "org/Model:Q4", []File{f})
		if err != nil {
			t.Fatalf("Fetch #%d: %v", i, err)
		}
		want := filepath.Join(s.Root(), "org_Model_Q4", "weights.gguf")
		if len(got) != 1 || got[0].Path != want || got[0].Role != "model" {
			t.Fatalf("Fetch #%d: got %+v, want [{model %s}]", i, got, want)
		}
		b, err := os.ReadFile(want)
		if err != nil || !bytes.Equal(b, data) {
			t.Fatalf("Fetch #%d: file content differs (err %v)", i, err)
		}
	}
	if got := len(o.requests("/m/weights.gguf")); got != 1 {
		t.Errorf("GETs: got %d, want 1 (second Fetch must reuse without network)", got)
	}
	if got, want := cacheFiles(t, s.Root()), []string{"org_Model_Q4/weights.gguf"}; !equalStrings(got, want) {
		t.Errorf("cache files: got %q, want %q", got, want)
	}
}

func TestFetchFaultsLeaveNothing(t *testing.T) {
	data := randomBytes(256<<10, 2)
	tests := []struct {
		name    string
		handler http.HandlerFunc
		sha     string
		wantIs  error // nil: any retryable error
		refused bool
	}{
		{
			name: "truncated body",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", strconv.Itoa(len(data)))
				w.Write(data[:len(data)/2]) // the server closes the connection short
			},
			wantIs: ErrIntegrity,
		},
		{
			name:    "wrong sha256",
			handler: serveContent(data),
			sha:     sha([]byte("something else")),
			wantIs:  ErrIntegrity,
		},
		{
			name: "not found",
			handler: func(w http.ResponseWriter, r *http.Request) {
				http.Error(w, "no such model", http.StatusNotFound)
			},
		},
		{
			name: "stalled mid-body",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", strconv.Itoa(len(data)))
				w.Write(data[:1000])
				w.(http.Flusher).Flush()
				<-r.Context().Done() // never sends the rest
			},
			wantIs: ErrStalled,
		},
		{
			name: "stalled before headers",
			handler: func(w http.ResponseWriter, r *http.Request) {
				<-r.Context().Done()
			},
			wantIs: ErrStalled,
		},
		{
			name: "redirect to non-loopback http",
			handler: func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, "http://models.example/w.gguf", http.StatusFound)
			},
			refused: true,
		},
		{
			name: "redirect to ftp",
			handler: func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, "ftp://127.0.0.1/w.gguf", http.StatusFound)
			},
			refused: true,
		},
		{
			name: "redirect to file",
			handler: func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, "file:///etc/passwd", http.StatusMovedPermanently)
			},
			refused: true,
		},
		{
			name: "redirect loop",
			handler: func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, r.URL.Path, http.StatusFound)
			},
			refused: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := newOrigin(t)
			o.mux.Handle("/w.gguf", tt.handler)
			cfg := testConfig(t)
			cfg.IdleTimeout = 200 * time.Millisecond
			s := openStore(t, cfg)

			_, err := s.Fetch(context.Background(), "m", []File{{Role: "model", URL: o.URL + "/w.gguf?sig=topsecret", Filename: "w.gguf", SHA256: tt.sha}})
			if err == nil {
				t.Fatal("Fetch: got nil error, want a failure")
			}
			var merr *Error
			if !errors.As(err, &merr) {
				t.Fatalf("Fetch: got %T %v, want *Error", err, err)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("Fetch: got %v, want errors.Is %v", err, tt.wantIs)
			}
			if got := errors.Is(err, ErrRefused); got != tt.refused {
				t.Errorf("errors.Is(ErrRefused): got %v, want %v (err %v)", got, tt.refused, err)
			}
			if got := merr.Retryable(); got == tt.refused {
				t.Errorf("Retryable: got %v, want %v", got, !tt.refused)
			}
			if got := cacheFiles(t, s.Root()); len(got) != 0 {
				t.Errorf("cache after failure: got %q, want nothing", got)
			}
			if strings.Contains(err.Error(), "topsecret") {
				t.Errorf("error leaks the URL's query string: %v", err)
			}
			t.Logf("error: %v", err)
		})
	}
}

func serveContent(b []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
	}
}

func TestFetchResume(t *testing.T) {
	data := randomBytes(1<<20+333, 3)
	half := int64(len(data) / 2)
	tests := []struct {
		name      string
		handler   http.HandlerFunc
		part      []byte
		wantRange []string // the Range header of each request, in order
	}{
		{
			name:      "honest 206",
			handler:   serveContent(data),
			part:      data[:half],
			wantRange: []string{"bytes=" + strconv.FormatInt(half, 10) + "-"},
		},
		{
			name: "206 at the wrong offset restarts",
			handler: func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Range") != "" {
					w.Header().Set("Content-Range", "bytes 10-"+strconv.Itoa(len(data)-1)+"/"+strconv.Itoa(len(data)))
					w.WriteHeader(http.StatusPartialContent)
					w.Write(data[10:])
					return
				}
				serveContent(data)(w, r)
			},
			part:      data[:half],
			wantRange: []string{"bytes=" + strconv.FormatInt(half, 10) + "-", ""},
		},
		{
			name: "416 restarts",
			handler: func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Range") != "" {
					w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
					return
				}
				serveContent(data)(w, r)
			},
			part:      data[:half],
			wantRange: []string{"bytes=" + strconv.FormatInt(half, 10) + "-", ""},
		},
		{
			name: "200 to a range request restarts in place",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Write(data)
			},
			part:      data[:half],
			wantRange: []string{"bytes=" + strconv.FormatInt(half, 10) + "-"},
		},
		{
			name:      "a .part longer than the file gets 416 and restarts",
			handler:   serveContent(data),
			part:      append(append([]byte{}, data...), "junk"...),
			wantRange: []string{"bytes=" + strconv.Itoa(len(data)+4) + "-", ""},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := newOrigin(t)
			o.mux.Handle("/w.gguf", tt.handler)
			s := openStore(t, testConfig(t))
			dir := filepath.Join(s.Root(), "m")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "w.gguf.part"), tt.part, 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := s.Fetch(context.Background(), "m", []File{{URL: o.URL + "/w.gguf", Filename: "w.gguf", SHA256: sha(data)}})
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			b, err := os.ReadFile(got[0].Path)
			if err != nil || !bytes.Equal(b, data) {
				t.Fatalf("content: got %d bytes (err %v), want the %d bytes served", len(b), err, len(data))
			}
			var ranges []string
			for _, r := range o.requests("/w.gguf") {
				ranges = append(ranges, r.Range)
			}
			if !equalStrings(ranges, tt.wantRange) {
				t.Errorf("Range headers: got %q, want %q", ranges, tt.wantRange)
			}
			if got, want := cacheFiles(t, s.Root()), []string{"m/w.gguf"}; !equalStrings(got, want) {
				t.Errorf("cache files: got %q, want %q", got, want)
			}
		})
	}
}

func TestFetchResumeOfCorruptPartFailsClean(t *testing.T) {
	data := randomBytes(200<<10, 4)
	o := newOrigin(t)
	o.serveBytes("/w.gguf", data)
	s := openStore(t, testConfig(t))
	dir := filepath.Join(s.Root(), "m")
	os.MkdirAll(dir, 0o755)
	bad := randomBytes(100<<10, 5) // same length as a half, other bytes
	if err := os.WriteFile(filepath.Join(dir, "w.gguf.part"), bad, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := s.Fetch(context.Background(), "m", []File{{URL: o.URL + "/w.gguf", Filename: "w.gguf", SHA256: sha(data)}})
	if !errors.Is(err, ErrIntegrity) {
		t.Fatalf("Fetch: got %v, want ErrIntegrity", err)
	}
	if got := cacheFiles(t, s.Root()); len(got) != 0 {
		t.Fatalf("cache after failure: got %q, want nothing", got)
	}
	// The next attempt starts clean and succeeds.
	if _, err := s.Fetch(context.Background(), "m", []File{{URL: o.URL + "/w.gguf", Filename: "w.gguf", SHA256: sha(data)}}); err != nil {
		t.Fatalf("second Fetch: %v", err)
	}
}

func TestFetchCancelKeepsPartForResume(t *testing.T) {
	data := randomBytes(2<<20, 6)
	half := len(data) / 2
	release := make(chan struct{})
	o := newOrigin(t)
	o.mux.HandleFunc("/w.gguf", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Range") != "" {
			serveContent(data)(w, r)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.Write(data[:half])
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	defer close(release)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := testConfig(t)
	cfg.ProgressInterval = time.Nanosecond
	cfg.OnProgress = func(p Progress) {
		if p.Done >= int64(half) {
			cancel() // a shutdown, once half the bytes are on disk
		}
	}
	s := openStore(t, cfg)
	f := File{URL: o.URL + "/w.gguf", Filename: "w.gguf", SHA256: sha(data)}
	if _, err := s.Fetch(ctx, "m", []File{f}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Fetch: got %v, want context.Canceled", err)
	}
	fi, err := os.Stat(filepath.Join(s.Root(), "m", "w.gguf.part"))
	if err != nil || fi.Size() != int64(half) {
		t.Fatalf(".part after cancel: got %v (err %v), want %d bytes", fi, err, half)
	}

	var final Progress
	s2 := openStore(t, Config{Root: s.Root(), HTTPClient: cfg.HTTPClient, Allow: testLoopback, // as after a restart
		OnProgress: func(p Progress) {
			if p.Final {
				final = p
			}
		}})
	if _, err := s2.Fetch(context.Background(), "m", []File{f}); err != nil {
		t.Fatalf("resumed Fetch: %v", err)
	}
	if final.Done != int64(len(data)) || final.Fetched != int64(len(data)-half) {
		t.Errorf("resumed download's final progress: Done %d Fetched %d, want %d and %d (the resumed bytes are not fetched again)",
			final.Done, final.Fetched, len(data), len(data)-half)
	}
	reqs := o.requests("/w.gguf")
	if len(reqs) != 2 || reqs[1].Range != "bytes="+strconv.Itoa(half)+"-" {
		t.Errorf("requests: got %+v, want a second one with Range bytes=%d-", reqs, half)
	}
}

func TestFetchRefusesHostileNamesBeforeAnyRequest(t *testing.T) {
	names := []string{
		"../../etc/passwd", "/abs", `a\b`, "CON", "con.gguf", "COM1", "lpt9.txt", "nul",
		"a\x00b", "", ".", "..", ".hidden", "x.gguf.part", "tab\there", "trailing.",
		"c:drive", strings.Repeat("a", 201), "bad\xffutf8",
	}
	o := newOrigin(t)
	o.serveBytes("/x", []byte("payload"))
	s := openStore(t, testConfig(t))
	for _, name := range names {
		t.Run(strconv.Quote(name), func(t *testing.T) {
			_, err := s.Fetch(context.Background(), "m", []File{{URL: o.URL + "/x", Filename: name}})
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("Fetch(%q): got %v, want ErrRefused", name, err)
			}
		})
	}
	// A hostile name later in the list stops the whole call up front.
	_, err := s.Fetch(context.Background(), "m", []File{{URL: o.URL + "/x", Filename: "ok.bin"}, {URL: o.URL + "/x", Filename: "../x"}})
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("Fetch with one bad name: got %v, want ErrRefused", err)
	}
	if n := o.total(); n != 0 {
		t.Errorf("requests: got %d, want 0", n)
	}
	if got := cacheFiles(t, s.Root()); len(got) != 0 {
		t.Errorf("cache: got %q, want nothing", got)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(s.Root()), "etc")); err == nil {
		t.Errorf("a file was written outside the cache")
	}
}

func TestFetchRefusesURLsBeforeAnyRequest(t *testing.T) {
	o := newOrigin(t)
	o.serveBytes("/x", []byte("payload"))
	loopback := strings.Replace(o.URL, "127.0.0.1", "localhost", 1)
	tests := []struct {
		name       string
		url        string
		refuseHTTP bool
	}{
		{"ftp", "ftp://127.0.0.1/x", false},
		{"file", "file:///etc/passwd", false},
		{"non-loopback http", "http://models.example/x", false},
		{"http to an IP that merely looks local", "http://10.0.0.1/x", false},
		{"no scheme", "//127.0.0.1/x", false},
		{"credentials", "https://user:pw@models.example/x", false},
		{"javascript", "javascript:alert(1)", false},
		{"unparsable", "https://[::1", false},
		{"loopback http refused by configuration", o.URL + "/x", true},
		{"localhost http refused by configuration", loopback + "/x", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.RefuseLoopbackHTTP = tt.refuseHTTP
			s := openStore(t, cfg)
			_, err := s.Fetch(context.Background(), "m", []File{{URL: tt.url, Filename: "x.bin"}})
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("Fetch(%q): got %v, want ErrRefused", tt.url, err)
			}
			var merr *Error
			if !errors.As(err, &merr) || merr.Retryable() {
				t.Errorf("Fetch(%q): got %#v, want a non-retryable *Error", tt.url, err)
			}
			if strings.Contains(err.Error(), "pw") {
				t.Errorf("error leaks the URL's password: %v", err)
			}
		})
	}
	if n := o.total(); n != 0 {
		t.Errorf("requests: got %d, want 0", n)
	}
	// And the loopback forms are served when allowed.
	s := openStore(t, testConfig(t))
	if _, err := s.Fetch(context.Background(), "m", []File{{URL: loopback + "/x", Filename: "x.bin"}}); err != nil {
		t.Errorf("Fetch over http://localhost: %v", err)
	}
}

func TestFetchHTTPSWithRedirects(t *testing.T) {
	data := randomBytes(64<<10, 7)
	o := newTLSOrigin(t)
	o.serveBytes("/real.gguf", data)
	plainOrigin := newOrigin(t)
	plainOrigin.serveBytes("/real.gguf", data)
	o.mux.HandleFunc("/downgrade", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, plainOrigin.URL+"/real.gguf", http.StatusFound)
	})
	o.mux.HandleFunc("/hop/", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/hop/"))
		if n == 0 {
			http.Redirect(w, r, "/real.gguf", http.StatusFound)
			return
		}
		http.Redirect(w, r, "/hop/"+strconv.Itoa(n-1), http.StatusFound)
	})
	cfg := testConfig(t)
	cfg.HTTPClient = o.Client()
	s := openStore(t, cfg)
	tests := []struct {
		name    string
		path    string
		refused bool
	}{
		{"five redirects are followed", "/hop/4", false}, // /hop/4 .. /hop/0 then /real: 5 redirects
		{"six are refused", "/hop/5", true},
		{"https to loopback http is refused", "/downgrade", true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Fetch(context.Background(), "m"+strconv.Itoa(i), []File{{URL: o.URL + tt.path, Filename: "w.gguf", SHA256: sha(data)}})
			if tt.refused != errors.Is(err, ErrRefused) || (!tt.refused && err != nil) {
				t.Fatalf("Fetch: got %v, want refused=%v", err, tt.refused)
			}
		})
	}
	if n := plainOrigin.total(); n != 0 {
		t.Errorf("requests to the plain http origin: got %d, want 0", n)
	}
}

func newTLSOrigin(t testing.TB) *origin {
	t.Helper()
	o := &origin{mux: http.NewServeMux()}
	o.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.reqs = append(o.reqs, seenReq{Path: r.URL.Path, Range: r.Header.Get("Range")})
		o.mu.Unlock()
		o.mux.ServeHTTP(w, r)
	}))
	t.Cleanup(o.Close)
	return o
}

func TestFetchDiskPreflight(t *testing.T) {
	o := newOrigin(t)
	o.serveBytes("/x", []byte("payload"))
	s := openStore(t, testConfig(t))
	_, err := s.Fetch(context.Background(), "m", []File{{URL: o.URL + "/x", Filename: "huge.gguf", ApproxBytes: 1 << 62}})
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Fetch: got %v, want ErrNoSpace", err)
	}
	if n := o.total(); n != 0 {
		t.Errorf("requests: got %d, want 0", n)
	}
	if got := cacheFiles(t, s.Root()); len(got) != 0 {
		t.Errorf("cache: got %q, want nothing", got)
	}
}

func TestFetchReuseRules(t *testing.T) {
	data := randomBytes(10_000, 8)
	stale := randomBytes(10_000, 9)
	tests := []struct {
		name     string
		setup    func(root string) // files present before Fetch
		file     File
		wantPath string // relative to root
		wantGETs int
	}{
		{
			name:     "legacy flat file of the right size",
			setup:    func(root string) { os.WriteFile(filepath.Join(root, "w.gguf"), data, 0o644) },
			file:     File{Filename: "w.gguf", ApproxBytes: uint64(len(data))},
			wantPath: "w.gguf",
		},
		{
			name:     "legacy flat file without approxBytes",
			setup:    func(root string) { os.WriteFile(filepath.Join(root, "w.gguf"), data, 0o644) },
			file:     File{Filename: "w.gguf"},
			wantPath: "w.gguf",
		},
		{
			name:     "legacy flat file of another size is not used",
			setup:    func(root string) { os.WriteFile(filepath.Join(root, "w.gguf"), data[:10], 0o644) },
			file:     File{Filename: "w.gguf", ApproxBytes: uint64(len(data))},
			wantPath: "m/w.gguf",
			wantGETs: 1,
		},
		{
			name:     "legacy flat file failing sha256 is not used",
			setup:    func(root string) { os.WriteFile(filepath.Join(root, "w.gguf"), stale, 0o644) },
			file:     File{Filename: "w.gguf", SHA256: sha(data)},
			wantPath: "m/w.gguf",
			wantGETs: 1,
		},
		{
			name: "cached file matching sha256",
			setup: func(root string) {
				os.MkdirAll(filepath.Join(root, "m"), 0o755)
				os.WriteFile(filepath.Join(root, "m", "w.gguf"), data, 0o644)
			},
			file:     File{Filename: "w.gguf", SHA256: sha(data)},
			wantPath: "m/w.gguf",
		},
		{
			name: "stale cached file is replaced",
			setup: func(root string) {
				os.MkdirAll(filepath.Join(root, "m"), 0o755)
				os.WriteFile(filepath.Join(root, "m", "w.gguf"), stale, 0o644)
			},
			file:     File{Filename: "w.gguf", SHA256: sha(data)},
			wantPath: "m/w.gguf",
			wantGETs: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := newOrigin(t)
			o.serveBytes("/w", data)
			s := openStore(t, testConfig(t))
			tt.setup(s.Root())
			f := tt.file
			f.URL = o.URL + "/w"
			for i := 0; i < 2; i++ { // the second call exercises the verification record
				got, err := s.Fetch(context.Background(), "m", []File{f})
				if err != nil {
					t.Fatalf("Fetch: %v", err)
				}
				if want := filepath.Join(s.Root(), tt.wantPath); got[0].Path != want {
					t.Fatalf("path: got %s, want %s", got[0].Path, want)
				}
				b, _ := os.ReadFile(got[0].Path)
				if !bytes.Equal(b, data) {
					t.Fatalf("content of %s differs from the served bytes", got[0].Path)
				}
			}
			if got := o.total(); got != tt.wantGETs {
				t.Errorf("GETs: got %d, want %d", got, tt.wantGETs)
			}
		})
	}
}

func TestFetchProgress(t *testing.T) {
	data := randomBytes(4<<20, 10)
	o := newOrigin(t)
	o.serveBytes("/w", data)
	var seen []Progress
	cfg := testConfig(t)
	cfg.ProgressInterval = time.Nanosecond
	cfg.OnProgress = func(p Progress) { seen = append(seen, p) }
	logger, logs := logEvents(t)
	cfg.Logger = logger
	s := openStore(t, cfg)
	if _, err := s.Fetch(context.Background(), "m", []File{{URL: o.URL + "/w", Filename: "w"}}); err != nil {
		t.Fatal(err)
	}
	waitLog(t, logs, "download progress", time.Second)
	if len(seen) < 2 {
		t.Fatalf("progress callbacks: got %d, want at least 2", len(seen))
	}
	last := seen[len(seen)-1]
	if !last.Final || last.Done != int64(len(data)) || last.Total != int64(len(data)) || last.File != "w" || last.Model != "m" {
		t.Errorf("final progress: got %+v, want Final with Done = Total = %d", last, len(data))
	}
	if last.Fetched != int64(len(data)) || last.Elapsed <= 0 {
		t.Errorf("final progress: Fetched %d in %v, want %d in some time", last.Fetched, last.Elapsed, len(data))
	}
	for i := 1; i < len(seen); i++ {
		if seen[i].Done < seen[i-1].Done {
			t.Errorf("progress went backwards: %d then %d", seen[i-1].Done, seen[i].Done)
		}
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
