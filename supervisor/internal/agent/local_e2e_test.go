package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stokerhq/stoker/supervisor/internal/devstudio"
	"github.com/stokerhq/stoker/supervisor/internal/jobslot"
	"github.com/stokerhq/stoker/supervisor/internal/localapi"
	"github.com/stokerhq/stoker/supervisor/internal/localmodels"
)

// localClient speaks to an agent's local API over real HTTP.
type localClient struct {
	base  string
	token string
}

func newLocalClient(tb testing.TB, s *stack) *localClient {
	tb.Helper()
	api := s.agent.LocalAPI()
	if api == nil {
		tb.Fatal("the local API is off")
	}
	tok, err := os.ReadFile(filepath.Join(s.state, localapi.TokenFile))
	if err != nil {
		tb.Fatal(err)
	}
	return &localClient{base: "http://" + api.Addr().String(), token: strings.TrimSpace(string(tok))}
}

// do sends a request (with the token unless noToken) and returns the
// status, headers and body.
func (c *localClient) do(tb testing.TB, method, path, contentType string, body []byte, noToken bool) (int, http.Header, []byte) {
	tb.Helper()
	req, err := http.NewRequest(method, c.base+path, bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if !noToken {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

func (c *localClient) postJSON(tb testing.TB, path string, v any) (int, http.Header, []byte) {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return c.do(tb, "POST", path, "application/json", b, false)
}

// putModel adds a local catalog model through POST /models.
func (c *localClient) putModel(tb testing.TB, id, engine string, width, height uint32) {
	tb.Helper()
	m := map[string]any{"id": id, "engine": engine, "files": []any{},
		"cliDefaults": map[string]any{"cfgScale": 1, "steps": 1, "width": width, "height": height}}
	if code, _, body := c.postJSON(tb, "/models", m); code != http.StatusOK {
		tb.Fatalf("POST /models %s: %d %s", id, code, body)
	}
}

// TestLocalImageAPI: the reference's routes over real HTTP against the
// real agent and the synthetic and e2e plugins: their status codes, the
// catalog persisted to its file, hostile ids refused.
func TestLocalImageAPI(t *testing.T) {
	s := startStack(t, stackOptions{listen: "127.0.0.1:0"})
	c := newLocalClient(t, s)
	if code, _, body := c.do(t, "GET", "/healthz", "", nil, true); code != http.StatusOK {
		t.Fatalf("/healthz: %d %s", code, body)
	}
	code, _, body := c.do(t, "GET", "/models", "", nil, true)
	if code != http.StatusOK || !strings.Contains(string(body), `"id":"sd-turbo"`) {
		t.Fatalf("GET /models: %d %s; want the default model sd-turbo", code, body)
	}
	c.putModel(t, "synthetic-image", "synthetic", 64, 64)
	c.putModel(t, "e2e-blob", "e2e", 8, 8)
	c.putModel(t, "no-plugin", "llama-cpp", 1, 1)

	// A real image through the synthetic plugin.
	code, h, body := c.postJSON(t, "/image", map[string]any{"prompt": "a lighthouse at dusk", "model": "synthetic-image", "width": 64, "height": 48, "ext": "png", "seed": 7})
	if code != http.StatusOK || h.Get("Content-Type") != "image/png" {
		t.Fatalf("POST /image: %d %s %.200s", code, h.Get("Content-Type"), body)
	}
	img, err := png.Decode(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("the image does not decode: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 64 || b.Dy() != 48 {
		t.Errorf("image is %dx%d, want 64x48", b.Dx(), b.Dy())
	}

	tests := []struct {
		name    string
		body    string
		noToken bool
		want    int
	}{
		{"no token", `{"prompt":"x","model":"synthetic-image"}`, true, http.StatusUnauthorized},
		{"unknown model", `{"prompt":"x","model":"no-such-model"}`, false, http.StatusBadRequest},
		{"hostile model id", `{"prompt":"x","model":"../../etc/passwd"}`, false, http.StatusBadRequest},
		{"no prompt", `{"model":"synthetic-image"}`, false, http.StatusBadRequest},
		{"not JSON", `prompt=x`, false, http.StatusBadRequest},
		{"unknown field", `{"prompt":"x","model":"synthetic-image","sampler":"euler"}`, false, http.StatusBadRequest},
		{"two values", `{"prompt":"x"}{"prompt":"y"}`, false, http.StatusBadRequest},
		{"body too large", `{"prompt":"` + strings.Repeat("x", 70<<10) + `"}`, false, http.StatusBadRequest},
		{"bad input for the engine", `{"prompt":"x","model":"synthetic-image","width":100000,"height":100000}`, false, http.StatusBadRequest},
		{"engine failure", `{"prompt":"engine-error","model":"e2e-blob"}`, false, http.StatusInternalServerError},
		{"engine not on this node", `{"prompt":"x","model":"no-plugin"}`, false, http.StatusServiceUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, h, body := c.do(t, "POST", "/image", "application/json", []byte(tt.body), tt.noToken)
			if code != tt.want {
				t.Fatalf("got %d %.300s, want %d", code, body, tt.want)
			}
			var e struct{ Error string }
			if json.Unmarshal(body, &e) != nil || e.Error == "" {
				t.Errorf("error body %.300s is not {\"error\": \"...\"}", body)
			}
			if tt.want == http.StatusServiceUnavailable && h.Get("Retry-After") == "" {
				t.Errorf("503 without Retry-After")
			}
		})
	}
	// The node serves the next request after each failure.
	if code, _, body := c.postJSON(t, "/image", map[string]any{"prompt": "again", "model": "synthetic-image", "width": 8, "height": 8}); code != http.StatusOK {
		t.Fatalf("POST /image after the failures: %d %.300s", code, body)
	}

	// GET /jobs: the jobs that ran, newest first, failures with their code.
	code, _, body = c.do(t, "GET", "/jobs", "", nil, true)
	var jobs struct {
		Jobs []struct{ ID, Model, State, Code string }
	}
	if code != http.StatusOK || json.Unmarshal(body, &jobs) != nil || len(jobs.Jobs) == 0 {
		t.Fatalf("GET /jobs: %d %.500s", code, body)
	}
	if j := jobs.Jobs[0]; j.State != "completed" || j.Model != "synthetic-image" || !strings.HasPrefix(j.ID, "local-") {
		t.Errorf("newest job %+v, want the last completed synthetic-image job", j)
	}
	failed := false
	for _, j := range jobs.Jobs {
		failed = failed || j.State == "failed" && j.Code == "engine_error" && j.Model == "e2e-blob"
	}
	if !failed {
		t.Errorf("GET /jobs lacks the failed e2e-blob job: %s", body)
	}

	// The catalog: hostile ids refused, deletes persisted to its file.
	for _, id := range []string{".hidden", "a%20b", "a%2Fb", "%2E%2E%2Fetc", "%2E%2E"} {
		if code, _, body := c.do(t, "DELETE", "/models/"+id, "", nil, false); code != http.StatusBadRequest {
			t.Errorf("DELETE /models/%s: %d %s, want 400", id, code, body)
		}
	}
	// A literal ".." is cleaned away by the router before any handler.
	if code, _, _ := c.do(t, "DELETE", "/models/..", "", nil, false); code == http.StatusOK {
		t.Errorf("DELETE /models/..: 200")
	}
	code, _, body = c.postJSON(t, "/models", map[string]any{"id": "../escape", "engine": "synthetic", "files": []any{}, "cliDefaults": map[string]any{"cfgScale": 1, "steps": 1, "width": 1, "height": 1}})
	if code != http.StatusBadRequest {
		t.Errorf("POST /models with a hostile id: %d %s, want 400", code, body)
	}
	if code, _, body := c.do(t, "DELETE", "/models/e2e-blob", "", nil, true); code != http.StatusUnauthorized {
		t.Errorf("DELETE without the token: %d %s, want 401", code, body)
	}
	if code, _, body := c.do(t, "DELETE", "/models/e2e-blob", "", nil, false); code != http.StatusOK {
		t.Errorf("DELETE /models/e2e-blob: %d %s", code, body)
	}
	if code, _, body := c.do(t, "DELETE", "/models/e2e-blob", "", nil, false); code != http.StatusNotFound {
		t.Errorf("second DELETE: %d %s, want 404", code, body)
	}
	cat, err := localmodels.Open(filepath.Join(s.state, localmodels.FileName), nil)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range cat.List() {
		ids = append(ids, m.ID)
	}
	if got := strings.Join(ids, ","); got != "no-plugin,sd-turbo,synthetic-image" {
		t.Errorf("catalog file holds %s, want no-plugin,sd-turbo,synthetic-image", got)
	}

	// The status shows the local jobs apart from the studio's.
	code, _, body = c.do(t, "GET", "/v1/status", "", nil, true)
	var st struct {
		Local    *localapi.LocalJobs
		Counters localapi.Counters
	}
	if code != http.StatusOK || json.Unmarshal(body, &st) != nil || st.Local == nil {
		t.Fatalf("/v1/status: %d %.300s", code, body)
	}
	if st.Local.Completed != 2 || st.Local.Failed != 2 || st.Counters.Jobs.Completed != 0 {
		t.Errorf("local %+v, studio %+v: want 2 local completed, 2 failed, no studio job", st.Local, st.Counters.Jobs)
	}
	code, _, body = c.do(t, "GET", "/metrics", "", nil, true)
	if code != http.StatusOK || !strings.Contains(string(body), `stoker_local_jobs_total{outcome="completed"} 2`) {
		t.Errorf("/metrics lacks the local job count: %d", code)
	}
	if code, _, body := c.do(t, "GET", "/readyz", "", nil, true); code != http.StatusOK {
		t.Errorf("/readyz: %d %s", code, body)
	}
}

// gate is a directory the e2e engine's gated llm jobs ("gate:<dir>") wait
// on.
type gate string

func newGate(tb testing.TB) gate { return gate(tb.TempDir()) }

func (g gate) prompt() string { return "gate:" + string(g) }

// waitRunning waits until a gated job runs in the engine.
func (g gate) waitRunning(tb testing.TB) {
	tb.Helper()
	eventually(tb, "a gated job running in the engine", func() bool {
		m, _ := filepath.Glob(filepath.Join(string(g), "running-*"))
		return len(m) > 0
	})
}

func (g gate) release(tb testing.TB) {
	tb.Helper()
	if err := os.WriteFile(filepath.Join(string(g), "release"), nil, 0o600); err != nil {
		tb.Fatal(err)
	}
}

// eventually polls cond against a deadline, for state another process
// holds (there is no event to wait on).
func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond) // polling step, not a wait for an event
	}
}

// chatResult is what the tests read of a chat completion.
type chatResult struct {
	Status      int
	MaxInFlight int `json:"max_in_flight"`
	Choices     []struct {
		Message struct{ Content string }
	}
	Error *struct{ Message, Type, Code string }
}

func (c *localClient) chat(tb testing.TB, model, prompt string) chatResult {
	tb.Helper()
	code, h, body := c.postJSON(tb, "/v1/chat/completions", map[string]any{"model": model, "messages": []map[string]string{{"role": "user", "content": prompt}}})
	var r chatResult
	if err := json.Unmarshal(body, &r); err != nil {
		tb.Errorf("chat answer %.300s: %v", body, err)
	}
	r.Status = code
	if code == http.StatusTooManyRequests && h.Get("Retry-After") == "" {
		tb.Errorf("429 without Retry-After")
	}
	return r
}

// studioMaxInFlight reads the engine's count from a studio job's result.
func studioMaxInFlight(tb testing.TB, v devstudio.JobView) int {
	tb.Helper()
	mustComplete(tb.(*testing.T), v)
	var r struct {
		MaxInFlight int `json:"max_in_flight"`
	}
	if err := json.Unmarshal(v.Result, &r); err != nil {
		tb.Fatalf("studio result %s: %v", v.Result, err)
	}
	return r.MaxInFlight
}

func (s *stack) submitAsync(tb testing.TB, model, prompt string) string {
	tb.Helper()
	raw, _ := json.Marshal(map[string]any{"kind": "llm", "messages": []map[string]string{{"role": "user", "content": prompt}}})
	id, err := s.studio.Submit(model, raw)
	if err != nil {
		tb.Fatal(err)
	}
	return id
}

func (s *stack) wait(tb testing.TB, id string) devstudio.JobView {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	v, err := s.studio.WaitJob(ctx, id, func(v devstudio.JobView) bool { return v.Status.Done() })
	if err != nil {
		tb.Fatalf("job %s: %v; last view %+v", id, err, v)
	}
	return v
}

// TestLocalJobsShareTheSlot: the node's one job slot (I-10) between local
// requests and studio offers, shown by the e2e engine's own count of jobs
// at once in its process (max_in_flight in each result): a studio offer
// while a local job runs is rejected busy and re-offered, a local request
// while a studio job runs waits, one past the queue gets 429, and a local
// request and a studio offer at the same moment never run together;
// neither source loses a job.
func TestLocalJobsShareTheSlot(t *testing.T) {
	s := startStack(t, stackOptions{listen: "127.0.0.1:0", env: []string{"STOKER_LOCAL_QUEUE=1"},
		catalog: func(_ *devstudio.Server, c *devstudio.Catalog) { addEntry(t, c, "e2e-llm", "e2e") }})
	c := newLocalClient(t, s)
	c.putModel(t, "e2e-llm", "e2e", 1, 1)
	slot := s.agent.Slot()

	// A local job holds the slot: the studio's offer is rejected busy,
	// then re-offered and served once the local job is done.
	g := newGate(t)
	local := make(chan chatResult, 1)
	go func() { local <- c.chat(t, "e2e-llm", g.prompt()) }()
	g.waitRunning(t)
	refusedBefore := s.agent.Studio().Status().OffersRefused
	sid := s.submitAsync(t, "e2e-llm", "from the studio")
	eventually(t, "the studio's offer rejected busy", func() bool { return s.agent.Studio().Status().OffersRefused > refusedBefore })
	if h := slot.State().Holder; h != jobslot.Local {
		t.Fatalf("slot holder: got %q, want local", h)
	}
	g.release(t)
	if r := <-local; r.Status != http.StatusOK || r.MaxInFlight != 1 {
		t.Fatalf("local job: %+v, want 200 with max_in_flight 1", r)
	}
	if n := studioMaxInFlight(t, s.wait(t, sid)); n != 1 {
		t.Fatalf("studio job's engine saw %d jobs at once, want 1", n)
	}

	// A studio job holds the slot: a local request waits, the next is
	// refused 429 (queue of 1), and the waiting one is served after.
	g = newGate(t)
	sid = s.submitAsync(t, "e2e-llm", g.prompt())
	g.waitRunning(t)
	go func() { local <- c.chat(t, "e2e-llm", "waits its turn") }()
	eventually(t, "the local request waiting for the slot", func() bool { return slot.State().Waiting == 1 })
	if r := c.chat(t, "e2e-llm", "one too many"); r.Status != http.StatusTooManyRequests || r.Error == nil || r.Error.Type != "rate_limit_error" {
		t.Fatalf("request past the queue: %+v, want 429 rate_limit_error", r)
	}
	g.release(t)
	if n := studioMaxInFlight(t, s.wait(t, sid)); n != 1 {
		t.Fatalf("studio job's engine saw %d jobs at once, want 1", n)
	}
	if r := <-local; r.Status != http.StatusOK || r.MaxInFlight != 1 {
		t.Fatalf("waiting local job: %+v, want 200 with max_in_flight 1", r)
	}

	// At the same moment, round after round: never two at once, none lost.
	for round := range 5 {
		var wg sync.WaitGroup
		start := make(chan struct{})
		var lr chatResult
		var id string
		wg.Go(func() { <-start; lr = c.chat(t, "e2e-llm", "race local") })
		wg.Go(func() { <-start; id = s.submitAsync(t, "e2e-llm", "race studio") })
		close(start)
		wg.Wait()
		if lr.Status != http.StatusOK || lr.MaxInFlight != 1 {
			t.Fatalf("round %d: local job %+v, want 200 with max_in_flight 1", round, lr)
		}
		if n := studioMaxInFlight(t, s.wait(t, id)); n != 1 {
			t.Fatalf("round %d: studio job's engine saw %d jobs at once", round, n)
		}
	}
}

// TestLocalChatStream: a streamed chat over real HTTP through the agent and
// the synthetic plugin, which streams one piece per word: server-sent
// events, role first, the pieces joining to the unstreamed answer, the
// finish reason and usage, then [DONE]; an unknown model is an ordinary
// OpenAI error, not a stream.
func TestLocalChatStream(t *testing.T) {
	s := startStack(t, stackOptions{listen: "127.0.0.1:0"})
	c := newLocalClient(t, s)
	c.putModel(t, "synthetic-llm", "synthetic", 1, 1)
	body := func(stream bool) map[string]any {
		return map[string]any{"model": "synthetic-llm", "messages": []map[string]string{{"role": "user", "content": "Name three rivers."}},
			"stream": stream, "stream_options": map[string]bool{"include_usage": true}}
	}
	code, _, plain := c.postJSON(t, "/v1/chat/completions", body(false))
	var want struct {
		Choices []struct {
			Message      struct{ Content string }
			FinishReason string `json:"finish_reason"`
		}
		Usage struct {
			CompletionTokens int `json:"completion_tokens"`
		}
	}
	if code != http.StatusOK || json.Unmarshal(plain, &want) != nil || len(want.Choices) != 1 {
		t.Fatalf("unstreamed: %d %s", code, plain)
	}
	code, h, raw := c.postJSON(t, "/v1/chat/completions", body(true))
	if code != http.StatusOK || h.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("streamed: %d %s %.300s", code, h.Get("Content-Type"), raw)
	}
	events := strings.Split(strings.TrimSuffix(string(raw), "\n\n"), "\n\n")
	if events[len(events)-1] != "data: [DONE]" {
		t.Fatalf("stream does not end with [DONE]: %q", events[len(events)-1])
	}
	var pieces []string
	var role, finish string
	usage := 0
	for _, ev := range events[:len(events)-1] {
		data, ok := strings.CutPrefix(ev, "data: ")
		if !ok {
			t.Fatalf("event %q is not a data line", ev)
		}
		var ch struct {
			Object  string
			Choices []struct {
				Delta        struct{ Role, Content string }
				FinishReason *string `json:"finish_reason"`
			}
			Usage *struct {
				CompletionTokens int `json:"completion_tokens"`
			}
		}
		if err := json.Unmarshal([]byte(data), &ch); err != nil || ch.Object != "chat.completion.chunk" {
			t.Fatalf("chunk %s: %v", data, err)
		}
		if ch.Usage != nil {
			usage = ch.Usage.CompletionTokens
		}
		for _, c := range ch.Choices {
			if c.Delta.Role != "" {
				role = c.Delta.Role
			}
			if c.Delta.Content != "" {
				pieces = append(pieces, c.Delta.Content)
			}
			if c.FinishReason != nil {
				finish = *c.FinishReason
			}
		}
	}
	if role != "assistant" || strings.Join(pieces, "") != want.Choices[0].Message.Content || finish != want.Choices[0].FinishReason {
		t.Errorf("stream: role %q, pieces %q, finish %q; want assistant, %q, %q", role, pieces, finish, want.Choices[0].Message.Content, want.Choices[0].FinishReason)
	}
	if len(pieces) != want.Usage.CompletionTokens || usage != want.Usage.CompletionTokens {
		t.Errorf("%d pieces, usage %d, for %d tokens: want one piece per word", len(pieces), usage, want.Usage.CompletionTokens)
	}
	b := body(true)
	b["model"] = "no-such-model"
	code, h, raw = c.postJSON(t, "/v1/chat/completions", b)
	var e struct{ Error struct{ Type, Code string } }
	if code != http.StatusBadRequest || h.Get("Content-Type") != "application/json" || json.Unmarshal(raw, &e) != nil || e.Error.Code != "model_not_found" {
		t.Errorf("unknown model, streamed: %d %s %s", code, h.Get("Content-Type"), raw)
	}
}

// TestLocalJobDrains: the agent's first signal lets a running local job
// finish (its client gets the answer) and refuses new local requests with
// 503 meanwhile; then the agent stops cleanly.
func TestLocalJobDrains(t *testing.T) {
	s := startStack(t, stackOptions{listen: "127.0.0.1:0"})
	c := newLocalClient(t, s)
	c.putModel(t, "e2e-llm", "e2e", 1, 1)
	g := newGate(t)
	running := make(chan chatResult, 1)
	go func() { running <- c.chat(t, "e2e-llm", g.prompt()) }()
	g.waitRunning(t)
	stopped := make(chan error, 1)
	go func() { stopped <- s.stop() }()
	// A request sent before the drain began waits for the slot; the
	// probe gives up after a moment (leaving the queue) and tries again.
	eventually(t, "new local requests refused during the drain", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		body := strings.NewReader(`{"model":"e2e-llm","messages":[{"role":"user","content":"too late"}]}`)
		req, _ := http.NewRequestWithContext(ctx, "POST", c.base+"/v1/chat/completions", body)
		req.Header.Set("Authorization", "Bearer "+c.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	g.release(t)
	if r := <-running; r.Status != http.StatusOK || r.MaxInFlight != 1 {
		t.Fatalf("the local job running at the signal: %+v, want 200", r)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("agent.Run: %v", err)
	}
}
