package devstudio

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

// TestPostGuard: a page on another site posts text/plain (a "simple"
// request, no CORS preflight) to the dev studio on loopback; it must not
// queue a job or approve a worker.
func TestPostGuard(t *testing.T) {
	s := newServer(t, Config{})
	post := func(path, ctype, origin, body string) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, s.URL()+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
			req.Header.Set("Sec-Fetch-Site", "cross-site")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	job := `{"model":"synthetic-image","task":` + imageTask + `}`
	if code := post("/api/jobs", "text/plain", "http://evil.example", job); code != http.StatusForbidden && code != http.StatusUnsupportedMediaType {
		t.Errorf("foreign text/plain POST /api/jobs = %d, want 403 or 415", code)
	}
	if code := post("/api/jobs", "text/plain", "", job); code != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain POST /api/jobs = %d, want 415", code)
	}
	if jobs := s.Jobs(); len(jobs) != 0 {
		t.Errorf("refused POSTs queued %d jobs", len(jobs))
	}
	regURL, _ := protocol.HTTPURL(s.URL(), protocol.RouteRegisterRequest)
	refused := []struct {
		name, path, ctype, origin string
		want                      int
	}{
		{"form POST /api/jobs", "/api/jobs", "application/x-www-form-urlencoded", "", http.StatusUnsupportedMediaType},
		{"curl -d without a type", "/api/jobs", "", "", http.StatusUnsupportedMediaType},
		{"foreign JSON POST /api/jobs", "/api/jobs", "application/json", "http://evil.example", http.StatusForbidden},
		{"foreign approve", "/api/registrations/rr-1/approve", "application/json", "http://evil.example", http.StatusForbidden},
		{"foreign text/plain approve", "/api/registrations/rr-1/approve", "text/plain", "http://evil.example", http.StatusUnsupportedMediaType},
		{"foreign register request", strings.TrimPrefix(regURL, s.URL()), "text/plain", "http://evil.example", http.StatusForbidden},
	}
	for _, tt := range refused {
		if code := post(tt.path, tt.ctype, tt.origin, job); code != tt.want {
			t.Errorf("%s = %d, want %d", tt.name, code, tt.want)
		}
	}
	if regs := s.Registrations(); len(regs) != 0 {
		t.Errorf("a foreign page filed %d registration requests", len(regs))
	}
	// The dashboard's own fetch, and curl with the type, pass.
	req, _ := http.NewRequest(http.MethodPost, s.URL()+"/api/jobs", strings.NewReader(job))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("Origin", s.URL())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("the dashboard's same-origin POST = %d, want 200", resp.StatusCode)
	}
	if code := post("/api/jobs", "application/json", "", job); code != http.StatusOK {
		t.Errorf("curl's JSON POST = %d, want 200", code)
	}
}

// TestHostCheck: a DNS-rebinding page (its own name resolved to 127.0.0.1)
// must not read the jobs, their prompts and results.
func TestHostCheck(t *testing.T) {
	s := newServer(t, Config{})
	submit(t, s, "synthetic-image", imageTask)
	req, err := http.NewRequest(http.MethodGet, s.URL()+"/api/jobs", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "evil.example:8700"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("GET /api/jobs with a rebound Host = %d, want 403", resp.StatusCode)
	}

	// An allowed name (a proxy in front) and IP literals pass.
	s2 := newServer(t, Config{AllowedHosts: []string{"studio.example"}})
	for _, host := range []string{"studio.example", "STUDIO.example:443", "localhost:8700", "127.0.0.1:8700", "[::1]:8700"} {
		req, _ := http.NewRequest(http.MethodGet, s2.URL()+"/api/jobs", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET /api/jobs with Host %q = %d, want 200", host, resp.StatusCode)
		}
	}
}

// TestNonLoopbackListenRefused: the dev studio has no authentication for
// people; it refuses an address off loopback.
func TestNonLoopbackListenRefused(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0", "192.0.2.1:8700", "studio.example:8700"} {
		s, err := New(Config{Addr: addr})
		if err == nil {
			s.Close()
			t.Errorf("New(Addr %q) succeeded, want a refusal", addr)
		} else if !errors.Is(err, ErrNotLoopback) {
			t.Errorf("New(Addr %q) = %v, want ErrNotLoopback", addr, err)
		}
		// InsecureListen lets it through (New binds nothing).
		s, err = New(Config{Addr: addr, InsecureListen: true})
		if err != nil {
			t.Errorf("New(Addr %q, InsecureListen) = %v", addr, err)
		} else {
			s.Close()
		}
	}
	for _, addr := range []string{"127.0.0.1:0", "localhost:0", "[::1]:0"} {
		s, err := New(Config{Addr: addr})
		if err != nil {
			t.Errorf("New(Addr %q) = %v, want it accepted", addr, err)
			continue
		}
		s.Close()
	}
}
