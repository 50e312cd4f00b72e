package localapi

import (
	"net/http"
	"strings"
	"testing"
)

// TestHealthAndReadiness: /healthz answers while the server runs;
// /readyz wants a ready plugin and a way for jobs to reach it (a welcomed
// session, or the local job routes).
func TestHealthAndReadiness(t *testing.T) {
	src := &fakeSource{}
	ts := startServer(t, src, nil)
	if code, _, body := ts.get(t, "/healthz"); code != http.StatusOK || !strings.Contains(body, `"ok"`) {
		t.Errorf("/healthz: %d %s", code, body)
	}
	ready := Plugin{Name: "synthetic-plugin", State: "ready", Ready: true}
	tests := []struct {
		name string
		snap Snapshot
		want int
	}{
		{"nothing", Snapshot{Session: Session{State: "registering"}}, http.StatusServiceUnavailable},
		{"welcomed, no plugin ready", Snapshot{Session: Session{Welcomed: true}, Plugins: []Plugin{{Name: "p", State: "starting"}}}, http.StatusServiceUnavailable},
		{"plugin ready, not welcomed, no local jobs", Snapshot{Plugins: []Plugin{ready}}, http.StatusServiceUnavailable},
		{"plugin ready, welcomed", Snapshot{Session: Session{Welcomed: true}, Plugins: []Plugin{ready}}, http.StatusOK},
		{"plugin ready, local jobs before registration", Snapshot{Session: Session{State: "registering"}, Plugins: []Plugin{ready}, Local: &LocalJobs{}}, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src.set(tt.snap)
			code, h, body := ts.get(t, "/readyz")
			if code != tt.want {
				t.Errorf("/readyz: got %d %s, want %d", code, body, tt.want)
			}
			if code != http.StatusOK && (h.Get("Retry-After") == "" || !strings.Contains(body, "reasons")) {
				t.Errorf("/readyz not ready without Retry-After or reasons: %v %s", h, body)
			}
		})
	}
}

// TestJobAccess: a job route wants the token from every peer (the status
// page's key does not do), and refuses a cross-origin browser request; a
// read route from this machine does not.
func TestJobAccess(t *testing.T) {
	served := 0
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { served++; w.Write([]byte("ran")) })
	ts := startServer(t, nil, func(c *Config) {
		c.Routes = []Route{
			{Pattern: "POST /image", Handler: h, Access: JobAccess},
			{Pattern: "GET /models", Handler: h, Access: ReadAccess},
		}
	})
	tests := []struct {
		name   string
		method string
		path   string
		header http.Header
		want   int
	}{
		{"job without token", "POST", "/image", http.Header{"Content-Type": {"application/json"}}, http.StatusUnauthorized},
		{"job with wrong token", "POST", "/image", http.Header{"Authorization": {"Bearer nope"}}, http.StatusUnauthorized},
		{"job cross-origin", "POST", "/image", http.Header{"Authorization": {"Bearer " + testToken}, "Sec-Fetch-Site": {"cross-site"}}, http.StatusForbidden},
		{"job from a rebinding name", "POST", "/image", http.Header{"Authorization": {"Bearer " + testToken}, "Host": {"evil.example"}}, http.StatusForbidden},
		{"job with token", "POST", "/image", http.Header{"Authorization": {"Bearer " + testToken}}, http.StatusOK},
		{"read from this machine", "GET", "/models", nil, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := served
			code, _, body := ts.do(t, tt.method, tt.path, tt.header, "")
			if code != tt.want {
				t.Errorf("got %d %s, want %d", code, body, tt.want)
			}
			if ran := served > before; ran != (tt.want == http.StatusOK) {
				t.Errorf("handler ran: %v, want %v", ran, tt.want == http.StatusOK)
			}
		})
	}
}

// TestPageShowsLocalJobs: the status page shows the local jobs apart from
// the studio's, and the current job's source.
func TestPageShowsLocalJobs(t *testing.T) {
	snap := richSnapshot()
	snap.Job.Source = "local"
	snap.Local = &LocalJobs{Running: 1, Waiting: 2, MaxWaiting: 4, Completed: 7, Failed: 1, Refused: 3, RunSeconds: 12.5}
	src := &fakeSource{}
	src.set(snap)
	ts := startServer(t, src, nil)
	code, _, body := ts.get(t, "/")
	if code != http.StatusOK {
		t.Fatalf("GET /: %d", code)
	}
	for _, want := range []string{"<h2>Local jobs</h2>", "2 waiting (at most 4)", "<tr><th>completed</th><td>7</td></tr>", "<h2>Studio jobs</h2>", ">local</span>"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	_, _, metrics := ts.get(t, "/metrics")
	for _, want := range []string{`stoker_local_jobs_total{outcome="refused"} 3`, "stoker_local_jobs_waiting 2", "stoker_local_job_run_seconds_total 12.5"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}
