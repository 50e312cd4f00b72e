package devstudio

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

func doJSON(t testing.TB, method, url, token string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("decode %s %s: %v", method, url, err)
		}
	}
	return resp.StatusCode
}

func regRequest(install, secret string) protocol.RegisterRequest {
	return protocol.RegisterRequest{InstallID: install, RegistrationSecretHash: protocol.HashSecret(secret),
		Capabilities: caps(protocol.KindImage), UserAgent: "studio-worker/0.1.0"}
}

func TestRegistrationFlow(t *testing.T) {
	s := newServer(t, Config{})
	postURL, _ := protocol.HTTPURL(s.URL(), protocol.RouteRegisterRequest)
	secret := strings.Repeat("ab", 32)

	var resp protocol.RegisterResponse
	if st := doJSON(t, "POST", postURL, "", regRequest("install-1", secret), &resp); st != 200 || resp.Status != protocol.StatusPending || !strings.HasPrefix(resp.RequestID, "rr-") {
		t.Fatalf("register: got %d %+v, want 200 pending rr-…", st, resp)
	}
	var again protocol.RegisterResponse
	doJSON(t, "POST", postURL, "", regRequest("install-1", secret), &again)
	if again.RequestID != resp.RequestID {
		t.Errorf("dedupe: got %q, want the same request %q", again.RequestID, resp.RequestID)
	}
	bad := regRequest("install-2", secret)
	bad.RegistrationSecretHash = "short"
	if st := doJSON(t, "POST", postURL, "", bad, nil); st != http.StatusBadRequest {
		t.Errorf("bad hash: got %d, want 400", st)
	}

	pollURL, _ := protocol.HTTPURL(s.URL(), protocol.RouteRegisterRequestStatus(resp.RequestID))
	unknownURL, _ := protocol.HTTPURL(s.URL(), protocol.RouteRegisterRequestStatus("rr-nope"))
	var poll protocol.PollResponse
	tests := []struct {
		name, url, secret string
		want              int
	}{
		{"unknown request", unknownURL, secret, http.StatusNotFound},
		{"wrong secret", pollURL, strings.Repeat("cd", 32), http.StatusUnauthorized},
		{"the hash instead of the secret", pollURL, protocol.HashSecret(secret), http.StatusUnauthorized},
		{"no secret", pollURL, "", http.StatusUnauthorized},
	}
	for _, tt := range tests {
		if st := doJSON(t, "GET", tt.url, tt.secret, nil, nil); st != tt.want {
			t.Errorf("%s: got %d, want %d", tt.name, st, tt.want)
		}
	}
	if st := doJSON(t, "GET", pollURL, secret, nil, &poll); st != 200 || poll.Status != protocol.StatusPending {
		t.Fatalf("poll: got %d %+v, want pending", st, poll)
	}

	var regs []RegistrationView
	doJSON(t, "GET", s.URL()+"/api/registrations", "", nil, &regs)
	if len(regs) != 1 || regs[0].ID != resp.RequestID || regs[0].MachineName != "test" {
		t.Fatalf("listing: got %+v", regs)
	}
	if st := doJSON(t, "POST", s.URL()+"/api/registrations/rr-nope/approve", "", nil, nil); st != http.StatusNotFound {
		t.Errorf("approve unknown: got %d, want 404", st)
	}
	if st := doJSON(t, "POST", s.URL()+"/api/registrations/"+resp.RequestID+"/approve", "", nil, nil); st != 200 {
		t.Fatalf("approve: got %d", st)
	}
	var first, second protocol.PollResponse
	doJSON(t, "GET", pollURL, secret, nil, &first)
	doJSON(t, "GET", pollURL, secret, nil, &second)
	if first.Status != protocol.StatusApproved || first.WorkerID == "" || first.AuthToken == "" {
		t.Fatalf("poll: got %v, want approved", first)
	}
	if second.WorkerID != first.WorkerID || second.AuthToken == first.AuthToken {
		t.Fatalf("second poll: got %v, want the same worker and a fresh token", second)
	}
	// The first token was rotated away; the second one works.
	if _, err := dial(t, s, first.WorkerID, first.AuthToken); err == nil {
		t.Error("dial with the rotated token: got a connection, want 401")
	}
	w := connectAs(t, s, second.WorkerID, second.AuthToken)
	w.send(protocol.Heartbeat{Capabilities: caps()})
	expect[protocol.HeartbeatAck](w)

	// A rejected request.
	var r2 protocol.RegisterResponse
	doJSON(t, "POST", postURL, "", regRequest("install-3", secret), &r2)
	if st := doJSON(t, "POST", s.URL()+"/api/registrations/"+r2.RequestID+"/reject", "", map[string]string{"reason": "not ours"}, nil); st != 200 {
		t.Fatalf("reject: got %d", st)
	}
	poll2URL, _ := protocol.HTTPURL(s.URL(), protocol.RouteRegisterRequestStatus(r2.RequestID))
	var rej protocol.PollResponse
	doJSON(t, "GET", poll2URL, secret, nil, &rej)
	if rej.Status != protocol.StatusRejected || rej.Reason != "not ours" {
		t.Errorf("got %v, want rejected: not ours", rej)
	}
	if st := doJSON(t, "POST", s.URL()+"/api/registrations/"+r2.RequestID+"/approve", "", nil, nil); st != http.StatusConflict {
		t.Errorf("approve rejected: got %d, want 409", st)
	}
}

func TestAutoApprove(t *testing.T) {
	s := newServer(t, Config{AutoApprove: true})
	postURL, _ := protocol.HTTPURL(s.URL()+"/graphics/api/", protocol.RouteRegisterRequest)
	secret := strings.Repeat("0f", 32)
	var resp protocol.RegisterResponse
	doJSON(t, "POST", postURL, "", regRequest("install-auto", secret), &resp)
	pollURL, _ := protocol.HTTPURL(s.URL(), protocol.RouteRegisterRequestStatus(resp.RequestID))
	var poll protocol.PollResponse
	doJSON(t, "GET", pollURL, secret, nil, &poll)
	if poll.Status != protocol.StatusApproved {
		t.Fatalf("got %v, want approved on the first poll", poll)
	}
	connectAs(t, s, poll.WorkerID, poll.AuthToken, protocol.KindImage)
}

func TestJSONAPI(t *testing.T) {
	s := newServer(t, Config{})
	tests := []struct {
		name string
		body any
		want int
	}{
		{"unknown model", map[string]any{"model": "nope", "task": json.RawMessage(imageTask)}, 400},
		{"missing task", map[string]any{"model": "synthetic"}, 400},
		{"task without prompt", map[string]any{"model": "synthetic", "task": map[string]any{"kind": "image"}}, 400},
		{"unknown kind", map[string]any{"model": "synthetic", "task": map[string]any{"kind": "hologram"}}, 400},
		{"unknown field", map[string]any{"model": "synthetic", "task": json.RawMessage(imageTask), "priority": 1}, 400},
		{"not json", "{{{", 400},
		{"ok", map[string]any{"model": "synthetic-image", "task": json.RawMessage(imageTask)}, 200},
	}
	var created map[string]string
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if st := doJSON(t, "POST", s.URL()+"/api/jobs", "", tt.body, &created); st != tt.want {
				t.Errorf("got %d, want %d", st, tt.want)
			}
		})
	}
	id := created["id"]
	if id != "job-1" {
		t.Fatalf("got id %q, want job-1", id)
	}
	var v JobView
	if st := doJSON(t, "GET", s.URL()+"/api/jobs/"+id, "", nil, &v); st != 200 || v.Status != JobQueued || v.Model != "synthetic-image" || v.Kind != "image" {
		t.Errorf("got %d %+v, want the queued job", st, v)
	}
	if st := doJSON(t, "GET", s.URL()+"/api/jobs/job-99", "", nil, nil); st != 404 {
		t.Errorf("unknown job: got %d, want 404", st)
	}
	var list []JobView
	doJSON(t, "GET", s.URL()+"/api/jobs", "", nil, &list)
	if len(list) != 1 || list[0].ID != id {
		t.Errorf("got %+v, want one job", list)
	}
	w := connect(t, s, protocol.KindImage)
	w.send(protocol.LogBatch{Entries: []protocol.LogEntry{{Ts: "2026-06-11T09:14:03.512Z", Level: "info", Category: "ws", Message: "hi", JobID: id}}})
	if _, err := s.WaitWorker(ctxT(t), w.id, func(v WorkerView) bool { return v.LogCount == 1 }); err != nil {
		t.Fatal(err)
	}
	var workers []WorkerView
	doJSON(t, "GET", s.URL()+"/api/workers", "", nil, &workers)
	if len(workers) != 1 || !workers[0].Connected || workers[0].LogCount != 1 {
		t.Errorf("got %+v, want one connected worker with a log", workers)
	}
	var logs []protocol.LogEntry
	doJSON(t, "GET", s.URL()+"/api/workers/"+w.id+"/logs", "", nil, &logs)
	if len(logs) != 1 || logs[0].Message != "hi" {
		t.Errorf("got %+v, want the shipped entry", logs)
	}
	if st := doJSON(t, "GET", s.URL()+"/api/workers/w-none/logs", "", nil, nil); st != 404 {
		t.Errorf("unknown worker logs: got %d, want 404", st)
	}
	var models []string
	doJSON(t, "GET", s.URL()+"/api/models", "", nil, &models)
	if len(models) != 6 || models[0] != "synthetic" {
		t.Errorf("got %v, want the six synthetic models", models)
	}
	resp, err := http.Get(s.URL() + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(page, []byte("/api/jobs")) || bytes.Contains(page, []byte("https://")) {
		t.Errorf("dashboard: got %d, want a self-contained page using the API", resp.StatusCode)
	}
	if _, err := s.Submit("nope", json.RawMessage(imageTask)); !errors.Is(err, ErrUnknownModel) {
		t.Errorf("Submit unknown model: got %v, want ErrUnknownModel", err)
	}
	if _, err := s.WaitJob(ctxT(t), "job-404", func(JobView) bool { return true }); !errors.Is(err, ErrUnknownJob) {
		t.Errorf("WaitJob unknown: got %v, want ErrUnknownJob", err)
	}
}

func TestDevFiles(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tiny.gguf"), []byte("0123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := newServer(t, Config{FilesDir: dir})
	tests := []struct {
		name, path string
		rng        string
		want       int
		body       string
	}{
		{"file", "/dev/files/tiny.gguf", "", 200, "0123456789"},
		{"range", "/dev/files/tiny.gguf", "bytes=4-", 206, "456789"},
		{"via DevFileURL escaping", strings.TrimPrefix(s.DevFileURL("tiny.gguf"), s.URL()), "", 200, "0123456789"},
		{"missing", "/dev/files/nope.gguf", "", 404, ""},
		{"directory", "/dev/files/sub", "", 404, ""},
		{"escaped traversal", "/dev/files/..%2Fetc%2Fpasswd", "", 400, ""},
		{"escaped slash", "/dev/files/sub%2Fx", "", 400, ""},
		{"dot dot", "/dev/files/..", "", 0, ""}, // cleaned by the mux: never served from FilesDir
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", s.URL()+tt.path, nil)
			if tt.rng != "" {
				req.Header.Set("Range", tt.rng)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if tt.want == 0 {
				if resp.StatusCode == 200 && string(body) != "" && !bytes.Contains(body, []byte("<html")) {
					t.Errorf("got %d %q, want nothing from FilesDir", resp.StatusCode, body)
				}
				return
			}
			if resp.StatusCode != tt.want || (tt.body != "" && string(body) != tt.body) {
				t.Errorf("got %d %q, want %d %q", resp.StatusCode, body, tt.want, tt.body)
			}
		})
	}
}

func TestCatalog(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.json", `{"tiny-llama": {"engine":"llama-cpp","vramGbEstimate":1.5,
		"files":[{"role":"model","url":"http://127.0.0.1:1/dev/files/tiny.gguf","filename":"tiny.gguf","sha256":"ab"}],
		"cliDefaults":{"cfgScale":1,"steps":1,"width":1,"height":1,"contextSize":512}}}`)
	c, err := LoadCatalog(good)
	if err != nil {
		t.Fatalf("LoadCatalog: %v", err)
	}
	e, ok := c.Get("tiny-llama")
	if !ok || e.VramGbEstimate != 1.5 || e.Source.Engine != "llama-cpp" || len(e.Source.Files) != 1 || *e.Source.CliDefaults.ContextSize != 512 {
		t.Errorf("got %+v, want tiny-llama", e)
	}
	if _, ok := c.Get("synthetic-video"); !ok {
		t.Error("loaded catalog lacks the synthetic models")
	}

	bad := []struct{ name, body string }{
		{"not json", `{`},
		{"array", `[]`},
		{"null", `null`},
		{"entry not object", `{"m": 3}`},
		{"unknown key", `{"m": {"engine":"x","files":[],"cliDefaults":{"cfgScale":1,"steps":1,"width":1,"height":1},"gpu":true}}`},
		{"missing engine", `{"m": {"files":[],"cliDefaults":{"cfgScale":1,"steps":1,"width":1,"height":1}}}`},
		{"missing cliDefaults", `{"m": {"engine":"x","files":[]}}`},
		{"cliDefaults without steps", `{"m": {"engine":"x","files":[],"cliDefaults":{"cfgScale":1,"width":1,"height":1}}}`},
		{"hostile filename", `{"m": {"engine":"x","files":[{"role":"model","url":"https://h/a","filename":"../a"}],"cliDefaults":{"cfgScale":1,"steps":1,"width":1,"height":1}}}`},
		{"negative vram", `{"m": {"engine":"x","files":[],"vramGbEstimate":-1,"cliDefaults":{"cfgScale":1,"steps":1,"width":1,"height":1}}}`},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := LoadCatalog(write(tt.name+".json", tt.body)); err == nil {
				t.Error("got nil, want an error")
			}
		})
	}
	if _, err := LoadCatalog(filepath.Join(dir, "absent.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: got %v, want ErrNotExist", err)
	}
	if err := DefaultCatalog().Add("", CatalogEntry{}); err == nil {
		t.Error("Add empty id: got nil, want an error")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"negative attempts", Config{MaxAttempts: -1}},
		{"negative stale", Config{StaleAfter: -1}},
		{"files dir missing", Config{FilesDir: filepath.Join(t.TempDir(), "nope")}},
	}
	for _, tt := range tests {
		if s, err := New(tt.cfg); err == nil {
			s.Close()
			t.Errorf("%s: got nil, want an error", tt.name)
		}
	}
}
