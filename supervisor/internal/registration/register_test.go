package registration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

const testToken = "7c1e0000000000000000000000000000000000000000000000000000000000ff"

// reply is one scripted studio answer.
type reply struct {
	status int
	body   string
}

// fakeStudio is a real HTTP server on loopback that answers the two
// registration routes from scripts and records every request.
type fakeStudio struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	posts    []protocol.RegisterRequest
	rawPosts []string
	polls    []recordedPoll
	postScr  []reply
	pollScr  []reply
	// onPoll, if set, runs after each poll is recorded.
	onPoll func(n int)
}

type recordedPoll struct {
	path   string
	bearer string
}

func newFakeStudio(t *testing.T) *fakeStudio {
	f := &fakeStudio{t: t}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func next(scr *[]reply, def reply) reply {
	if len(*scr) == 0 {
		return def
	}
	r := (*scr)[0]
	*scr = (*scr)[1:]
	return r
}

func (f *fakeStudio) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	var rep reply
	var onPoll func(int)
	n := 0
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/graphics/api/workers/register-request":
		b, _ := io.ReadAll(r.Body)
		var req protocol.RegisterRequest
		if err := json.Unmarshal(b, &req); err != nil {
			f.t.Errorf("POST body is not a register request: %v", err)
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			f.t.Errorf("POST Content-Type = %q, want application/json", ct)
		}
		if a := r.Header.Get("Authorization"); a != "" {
			f.t.Errorf("POST carries Authorization %q, want none", a)
		}
		f.posts = append(f.posts, req)
		f.rawPosts = append(f.rawPosts, string(b))
		rep = next(&f.postScr, reply{200, `{"requestId":"rr-1","status":"pending"}`})
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.EscapedPath(), "/graphics/api/workers/register-requests/"):
		f.polls = append(f.polls, recordedPoll{path: r.URL.EscapedPath(), bearer: strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")})
		n, onPoll = len(f.polls), f.onPoll
		rep = next(&f.pollScr, reply{200, `{"status":"pending"}`})
	default:
		rep = reply{404, "no route"}
	}
	f.mu.Unlock()
	w.WriteHeader(rep.status)
	io.WriteString(w, rep.body)
	if onPoll != nil {
		onPoll(n)
	}
}

func (f *fakeStudio) calls() (posts, polls int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.posts), len(f.polls)
}

func testCaps() protocol.WorkerCapabilities {
	return protocol.WorkerCapabilities{MachineName: "render-07", Username: "ops", AgentVersion: "0.1.0", Engine: "multi",
		TaskKinds: []protocol.TaskKind{"image"}, SupportedModels: []string{"synthetic"}}
}

func testConfig(t *testing.T, f *fakeStudio, logOut io.Writer) Config {
	t.Helper()
	if logOut == nil {
		logOut = io.Discard
	}
	return Config{
		BaseURL:      f.srv.URL + "/",
		StateDir:     filepath.Join(t.TempDir(), "state"),
		Capabilities: testCaps,
		PollInterval: time.Millisecond,
		Logger:       hclog.New(&hclog.LoggerOptions{Output: logOut, Level: hclog.Trace}),
	}
}

func register(t *testing.T, cfg Config) (Credentials, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return Register(ctx, cfg)
}

var hex64 = regexp.MustCompile(`^[0-9a-f]{64}$`)

func TestRegisterApproved(t *testing.T) {
	f := newFakeStudio(t)
	f.pollScr = []reply{{200, `{"status":"pending"}`}, {200, `{"status":"approved","workerId":"w-9f2c","authToken":"` + testToken + `"}`}}
	var logs bytes.Buffer
	cfg := testConfig(t, f, &logs)

	creds, err := register(t, cfg)
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	if creds.WorkerID != "w-9f2c" || creds.AuthToken.Reveal() != testToken {
		t.Errorf("got credentials %q/%v, want w-9f2c and the token", creds.WorkerID, creds.AuthToken)
	}
	if posts, polls := f.calls(); posts != 1 || polls != 2 {
		t.Errorf("got %d posts and %d polls, want 1 and 2", posts, polls)
	}

	req := f.posts[0]
	if !installIDPattern.MatchString(req.InstallID) {
		t.Errorf("installId %q is not 8-4-4-4-12 lowercase hex", req.InstallID)
	}
	secretText := f.polls[0].bearer
	if !hex64.MatchString(secretText) {
		t.Fatalf("poll bearer %q is not a 64-hex secret", secretText)
	}
	if want := protocol.HashSecret(secretText); req.RegistrationSecretHash != want {
		t.Errorf("registrationSecretHash = %s, want SHA-256 of the secret's hex text %s", req.RegistrationSecretHash, want)
	}
	if strings.Contains(f.rawPosts[0], secretText) {
		t.Error("the POST body contains the raw secret")
	}
	if !req.Capabilities.AutoEnabled || req.Capabilities.MachineName != "render-07" {
		t.Errorf("capabilities = %+v, want the snapshot with autoEnabled true", req.Capabilities)
	}
	if req.UserAgent != "studio-worker/0.1.0" {
		t.Errorf("userAgent = %q, want studio-worker/0.1.0", req.UserAgent)
	}
	if f.polls[0].path != "/graphics/api/workers/register-requests/rr-1" {
		t.Errorf("poll path = %q", f.polls[0].path)
	}
	if f.polls[1].bearer != secretText {
		t.Error("the second poll used a different secret")
	}

	// Files: owner-only, no request state left, credentials stored.
	assertMode(t, cfg.StateDir, 0o700)
	assertMode(t, filepath.Join(cfg.StateDir, FileName), 0o600)
	raw, err := os.ReadFile(filepath.Join(cfg.StateDir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), secretText) || strings.Contains(string(raw), "rr-1") {
		t.Errorf("state file still holds the request after approval: %s", raw)
	}
	st, err := Load(cfg.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Status{Phase: Approved, InstallID: req.InstallID, WorkerID: "w-9f2c"}); st != want {
		t.Errorf("Load = %+v, want %+v", st, want)
	}

	// Never polls again: a second Register is answered from disk.
	creds2, err := register(t, cfg)
	if err != nil || creds2.WorkerID != "w-9f2c" || creds2.AuthToken.Reveal() != testToken {
		t.Errorf("second Register = %q, %v; want the stored credentials", creds2.WorkerID, err)
	}
	if posts, polls := f.calls(); posts != 1 || polls != 2 {
		t.Errorf("after second Register got %d posts and %d polls, want still 1 and 2", posts, polls)
	}

	// Neither secret reached the log; the request id did.
	if strings.Contains(logs.String(), secretText) || strings.Contains(logs.String(), testToken) {
		t.Errorf("log contains a secret:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "rr-1") {
		t.Errorf("log does not show the request id to the operator:\n%s", logs.String())
	}
}

func TestRegisterPostFailuresKeepSecret(t *testing.T) {
	for _, rep := range []reply{{429, "slow down"}, {500, "boom"}, {503, ""}, {400, "bad"}, {200, "not json"}, {200, `{"status":"pending"}`}} {
		t.Run(http.StatusText(rep.status)+" "+rep.body, func(t *testing.T) {
			f := newFakeStudio(t)
			f.postScr = []reply{rep, rep}
			f.pollScr = []reply{{200, `{"status":"approved","workerId":"w-1","authToken":"` + testToken + `"}`}}
			cfg := testConfig(t, f, nil)
			if _, err := register(t, cfg); err != nil {
				t.Fatalf("Register: %v", err)
			}
			if len(f.posts) != 3 {
				t.Fatalf("got %d posts, want 3 (two failures, one success)", len(f.posts))
			}
			for i, p := range f.posts {
				if p.RegistrationSecretHash != f.posts[0].RegistrationSecretHash || p.InstallID != f.posts[0].InstallID {
					t.Errorf("post %d changed the secret or install id after a failed POST", i)
				}
			}
		})
	}
}

func TestRegisterPoll404StartsOver(t *testing.T) {
	f := newFakeStudio(t)
	f.postScr = []reply{{200, `{"requestId":"rr-old","status":"pending"}`}, {200, `{"requestId":"rr-new","status":"pending"}`}}
	f.pollScr = []reply{{404, `{"error":"not found"}`}, {200, `{"status":"approved","workerId":"w-1","authToken":"` + testToken + `"}`}}
	cfg := testConfig(t, f, nil)
	if _, err := register(t, cfg); err != nil {
		t.Fatalf("Register: %v", err)
	}
	if len(f.posts) != 2 || len(f.polls) != 2 {
		t.Fatalf("got %d posts, %d polls; want 2 and 2", len(f.posts), len(f.polls))
	}
	if f.posts[0].InstallID != f.posts[1].InstallID {
		t.Error("install id changed after 404; it must be stable")
	}
	if f.posts[0].RegistrationSecretHash == f.posts[1].RegistrationSecretHash || f.polls[0].bearer == f.polls[1].bearer {
		t.Error("404 did not produce a fresh secret")
	}
	if !strings.HasSuffix(f.polls[1].path, "/rr-new") {
		t.Errorf("second poll went to %q, want the new request", f.polls[1].path)
	}
}

func TestRegisterPollTransientKeepsRequest(t *testing.T) {
	for _, rep := range []reply{{401, "unauthorized"}, {429, ""}, {500, ""}, {502, "<html>"}, {200, "{{{"}, {200, `{"status":"exploded"}`}, {200, `{"status":"approved","workerId":"w-1"}`}} {
		t.Run(http.StatusText(rep.status)+" "+rep.body, func(t *testing.T) {
			f := newFakeStudio(t)
			f.pollScr = []reply{rep, {200, `{"status":"approved","workerId":"w-1","authToken":"` + testToken + `"}`}}
			cfg := testConfig(t, f, nil)
			if _, err := register(t, cfg); err != nil {
				t.Fatalf("Register: %v", err)
			}
			if len(f.posts) != 1 || len(f.polls) != 2 {
				t.Fatalf("got %d posts, %d polls; want 1 and 2", len(f.posts), len(f.polls))
			}
			if f.polls[0].bearer != f.polls[1].bearer || f.polls[0].path != f.polls[1].path {
				t.Error("a transient poll failure changed the request")
			}
		})
	}
}

func TestRegisterRejected(t *testing.T) {
	f := newFakeStudio(t)
	f.pollScr = []reply{{200, `{"status":"rejected","reason":"unknown machine"}`}}
	cfg := testConfig(t, f, nil)
	_, err := register(t, cfg)
	var rej *RejectedError
	if !errors.As(err, &rej) || !errors.Is(err, ErrRejected) || rej.Reason != "unknown machine" {
		t.Fatalf("Register error = %v, want a RejectedError with the reason", err)
	}
	st, err := Load(cfg.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Phase != Rejected || st.RequestID != "" || st.RejectReason != "unknown machine" {
		t.Errorf("Load = %+v, want rejected without request", st)
	}
	// A restart does not re-request behind the operator's back.
	if _, err := register(t, cfg); !errors.Is(err, ErrRejected) {
		t.Errorf("second Register error = %v, want ErrRejected", err)
	}
	if posts, polls := f.calls(); posts != 1 || polls != 1 {
		t.Errorf("got %d posts, %d polls after restart; want 1 and 1", posts, polls)
	}
	// --reset starts over with a new identity.
	if err := Reset(cfg.StateDir); err != nil {
		t.Fatal(err)
	}
	if err := Reset(cfg.StateDir); err != nil {
		t.Fatalf("second Reset: %v", err)
	}
	f.pollScr = []reply{{200, `{"status":"approved","workerId":"w-2","authToken":"` + testToken + `"}`}}
	creds, err := register(t, cfg)
	if err != nil || creds.WorkerID != "w-2" {
		t.Fatalf("Register after reset = %q, %v", creds.WorkerID, err)
	}
	if f.posts[0].InstallID == f.posts[1].InstallID {
		t.Error("reset kept the install id")
	}
}

func TestRegisterRejectedWithoutReason(t *testing.T) {
	for _, body := range []string{`{"status":"rejected"}`, `{"status":"rejected","reason":null}`} {
		f := newFakeStudio(t)
		f.pollScr = []reply{{200, body}}
		_, err := register(t, testConfig(t, f, nil))
		var rej *RejectedError
		if !errors.As(err, &rej) || rej.Reason != "" {
			t.Errorf("%s: got %v, want a RejectedError with empty reason", body, err)
		}
	}
}

func TestRegisterStopsOnCancel(t *testing.T) {
	f := newFakeStudio(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f.onPoll = func(n int) {
		if n == 3 {
			cancel()
		}
	}
	cfg := testConfig(t, f, nil)
	_, err := Register(ctx, cfg)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Register error = %v, want context.Canceled", err)
	}
	st, err := Load(cfg.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Phase != Pending || st.RequestID != "rr-1" {
		t.Errorf("Load = %+v, want the request kept pending", st)
	}
}

func TestRegisterHostileRequestIDIsEscaped(t *testing.T) {
	f := newFakeStudio(t)
	f.postScr = []reply{{200, `{"requestId":"../../admin?x=1","status":"pending"}`}}
	f.pollScr = []reply{{200, `{"status":"approved","workerId":"w-1","authToken":"` + testToken + `"}`}}
	if _, err := register(t, testConfig(t, f, nil)); err != nil {
		t.Fatal(err)
	}
	if got, want := f.polls[0].path, "/graphics/api/workers/register-requests/..%2F..%2Fadmin%3Fx=1"; got != want {
		t.Errorf("poll path = %q, want %q", got, want)
	}
}

func TestRegisterBadStateFile(t *testing.T) {
	good := `{"installId":"5b1e0c7a-93d2-4f18-a0c4-2e7d91b3c6f0"}`
	tests := []struct {
		name    string
		content string
		mode    os.FileMode
		wantErr string
	}{
		{"group readable", good, 0o640, "owner-only"},
		{"world readable", good, 0o644, "owner-only"},
		{"malformed json", `{"installId":`, 0o600, "registration state"},
		{"bad install id", `{"installId":"../../etc"}`, 0o600, "installId"},
		{"bad secret", `{"installId":"5b1e0c7a-93d2-4f18-a0c4-2e7d91b3c6f0","registrationSecret":"short"}`, 0o600, "registrationSecret"},
		{"half credentials", `{"workerId":"w-1"}`, 0o600, "both present"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeStudio(t)
			cfg := testConfig(t, f, nil)
			if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(cfg.StateDir, FileName)
			if err := os.WriteFile(p, []byte(tt.content), tt.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, tt.mode); err != nil {
				t.Fatal(err)
			}
			_, err := register(t, cfg)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Register error = %v, want one mentioning %q", err, tt.wantErr)
			}
			if posts, polls := f.calls(); posts+polls != 0 {
				t.Errorf("made %d HTTP calls with a bad state file, want 0", posts+polls)
			}
			// The file is left for the operator to inspect.
			if b, _ := os.ReadFile(p); string(b) != tt.content {
				t.Errorf("state file was changed to %q", b)
			}
		})
	}
}

func TestRegisterConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no state dir", Config{BaseURL: "http://127.0.0.1:1/", Capabilities: testCaps}},
		{"no capabilities", Config{BaseURL: "http://127.0.0.1:1/", StateDir: t.TempDir()}},
		{"bad scheme", Config{BaseURL: "ftp://127.0.0.1/", StateDir: t.TempDir(), Capabilities: testCaps}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Register(context.Background(), tt.cfg); err == nil {
				t.Error("Register succeeded, want a config error")
			}
		})
	}
}

func TestIdentityGeneration(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 100; i++ {
		id, err := newInstallID()
		if err != nil {
			t.Fatal(err)
		}
		if !installIDPattern.MatchString(id) {
			t.Fatalf("install id %q has the wrong shape", id)
		}
		s, err := newSecret()
		if err != nil {
			t.Fatal(err)
		}
		if !hex64.MatchString(s) {
			t.Fatalf("secret has the wrong shape")
		}
		if seen[id] || seen[s] {
			t.Fatal("generated a value twice")
		}
		seen[id], seen[s] = true, true
	}
}

func TestStateNeverPrintsSecrets(t *testing.T) {
	s := state{InstallID: "i", RegistrationSecret: "sekrit-1", AuthToken: "sekrit-2", WorkerID: "w"}
	for _, got := range []string{s.String(), s.GoString(), fmtV(s), fmtV(&s)} {
		if strings.Contains(got, "sekrit") {
			t.Errorf("formatted state leaks a secret: %s", got)
		}
	}
}

func fmtV(v any) string {
	return strings.Join([]string{fmt.Sprintf("%v", v), fmt.Sprintf("%+v", v), fmt.Sprintf("%#v", v)}, " ")
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s has mode %04o, want %04o", path, got, want)
	}
}
