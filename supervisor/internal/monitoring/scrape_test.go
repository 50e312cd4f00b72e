package monitoring

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stokerhq/stoker/internal/syncbuf"
	"github.com/stokerhq/stoker/supervisor/internal/fleet"
)

// buildStoker builds stoker and the synthetic plugin into dir (the
// plugin into dir/plugins), owner-writable only as the agent wants.
func buildStoker(t *testing.T, dir string) (stoker, pluginDir string) {
	t.Helper()
	pluginDir = filepath.Join(dir, "plugins")
	for _, b := range []struct{ out, pkg string }{
		{dir, "./supervisor/cmd/stoker"},
		{pluginDir, "./synthetic-plugin"},
	} {
		cmd := exec.Command("go", "build", "-o", b.out+"/", b.pkg)
		cmd.Dir = repoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", b.pkg, err, out)
		}
	}
	for _, p := range []string{dir, pluginDir} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "stoker"), pluginDir
}

// prometheus is a real Prometheus server from Debian, on loopback.
type prometheus struct {
	url  string
	cmd  *exec.Cmd
	done chan struct{}
}

var promListening = regexp.MustCompile(`msg="Listening on" address=(\S+)`)

// startPrometheus runs Prometheus with config (written to dir) and
// returns once it listens. It is stopped when the test ends.
func startPrometheus(t *testing.T, ctx context.Context, dir, config string) *prometheus {
	t.Helper()
	bin := tool(t, "prometheus")
	cfgFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgFile, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin,
		"--config.file="+cfgFile,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address=127.0.0.1:0",
		"--log.level=info",
	)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &prometheus{cmd: cmd, done: make(chan struct{})}
	addr := make(chan string, 1)
	var log strings.Builder
	var logMu sync.Mutex
	go func() { // ends when Prometheus exits and its stderr closes
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			logMu.Lock()
			log.WriteString(line + "\n")
			logMu.Unlock()
			if m := promListening.FindStringSubmatch(line); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
		io.Copy(io.Discard, stderr)
		cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			logMu.Lock()
			t.Logf("prometheus log:\n%s", log.String())
			logMu.Unlock()
		}
	})
	select {
	case a := <-addr:
		p.url = "http://" + a
	case <-p.done:
		t.Fatalf("prometheus exited:\n%s", log.String())
	case <-ctx.Done():
		t.Fatalf("prometheus never listened: %v", ctx.Err())
	}
	return p
}

// promResult is one series of an instant query's result.
type promResult struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

func (r promResult) value() string { s, _ := r.Value[1].(string); return s }

// api GETs a Prometheus API path and decodes its data.
func (p *prometheus) api(ctx context.Context, path string, q url.Values, data any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url+path+"?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var body struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return fmt.Errorf("%s: %s: %w", path, resp.Status, err)
	}
	if body.Status != "success" {
		return fmt.Errorf("%s %s: %s", path, q.Encode(), body.Error)
	}
	return json.Unmarshal(body.Data, data)
}

func (p *prometheus) query(ctx context.Context, expr string) ([]promResult, error) {
	var data struct {
		ResultType string       `json:"resultType"`
		Result     []promResult `json:"result"`
	}
	if err := p.api(ctx, "/api/v1/query", url.Values{"query": {expr}}, &data); err != nil {
		return nil, err
	}
	return data.Result, nil
}

// waitFor polls Prometheus until cond holds for what expr returns. A
// scrape is an event in another process; its API is the only way to see
// it, so this asks every 200ms.
func (p *prometheus) waitFor(t *testing.T, ctx context.Context, what, expr string, cond func([]promResult) bool) []promResult {
	t.Helper()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var last []promResult
	var lastErr error
	for {
		last, lastErr = p.query(ctx, expr)
		if lastErr == nil && cond(last) {
			return last
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s (%s): %v; last result %+v, error %v", what, expr, ctx.Err(), last, lastErr)
		case <-p.done:
			t.Fatalf("prometheus exited while waiting for %s", what)
		case <-tick.C:
		}
	}
}

// TestPrometheusScrapesAnAgent starts a real `stoker studio` and a real
// agent with the synthetic plugin, and a real Prometheus (Debian's) that
// scrapes the agent every second and evaluates deploy/prometheus's rules.
// Jobs run; Prometheus then holds their counts and durations, the
// StokerJobsFailing rule, evaluated by Prometheus on what it scraped, goes
// pending on a node that fails more jobs than it completes (the expression
// docs/operations.md gave before returns nothing on the same data), every
// rule evaluates without error, and every query of the Grafana dashboard
// runs and names only metrics the agent exposes.
func TestPrometheusScrapesAnAgent(t *testing.T) {
	tool(t, "prometheus")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	stoker, pluginDir := buildStoker(t, filepath.Join(dir, "bin"))
	var agentLog syncbuf.Buffer
	f, err := fleet.Start(ctx, fleet.Config{Stoker: stoker, PluginDir: pluginDir, Agents: 1, WorkDir: filepath.Join(dir, "fleet"), Log: &agentLog})
	if err != nil {
		t.Fatalf("%v\n%s", err, agentLog.String())
	}
	defer func() {
		if err := f.Close(); err != nil {
			t.Errorf("fleet: %v", err)
		}
		if t.Failed() {
			t.Logf("studio and agent log:\n%s", agentLog.String())
		}
	}()
	api, err := url.Parse(f.Agents[0].API)
	if err != nil {
		t.Fatal(err)
	}
	target := api.Host
	rules := filepath.Join(repoRoot(t), "deploy", "prometheus", "stoker-alerts.yml")
	prom := startPrometheus(t, ctx, dir, fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - %q
scrape_configs:
  - job_name: stoker
    static_configs:
      - targets: [%q]
`, rules, target))

	// The first scrapes: the node is up, in session, with no job yet.
	prom.waitFor(t, ctx, "the agent scraped", `stoker_session_welcomed{job="stoker"}`, func(rs []promResult) bool {
		return len(rs) == 1 && rs[0].value() == "1" && rs[0].Metric["instance"] == target
	})
	prom.waitFor(t, ctx, "zero job counts scraped", `sum(stoker_jobs_total)`, func(rs []promResult) bool {
		return len(rs) == 1 && rs[0].value() == "0"
	})

	// One job completes; two fail (a file:// input the node cannot read),
	// each attempt a failure the node counts.
	var ids []string
	id, err := f.Submit(ctx, "synthetic-llm", map[string]any{"kind": "llm", "messages": []map[string]string{{"role": "user", "content": "hi"}}})
	if err != nil {
		t.Fatal(err)
	}
	ids = append(ids, id)
	for range 2 {
		id, err := f.Submit(ctx, "synthetic-stt", map[string]any{"kind": "audio_stt", "inputUrl": "file:///nonexistent/clip.wav"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	jobs, err := f.WaitJobs(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	failures := 0 // attempts that failed, each one counted by the node
	for i, j := range jobs {
		if want := map[bool]string{true: "completed", false: "failed"}[i == 0]; j.Status != want {
			t.Fatalf("job %d: %s (%s), want %s", i, j.Status, j.Error, want)
		}
		if i > 0 {
			failures += j.Attempts
		}
	}
	want := fmt.Sprint(failures)

	prom.waitFor(t, ctx, "the failures scraped ("+want+")", `sum(stoker_jobs_total{outcome=~"failed_.*"})`, func(rs []promResult) bool {
		return len(rs) == 1 && rs[0].value() == want
	})
	prom.waitFor(t, ctx, "the job durations scraped: llm completed 1, audio_stt failed "+want, `sum by (kind, engine, outcome) (stoker_job_duration_seconds_count)`, func(rs []promResult) bool {
		got := map[string]string{}
		failed := 0
		for _, r := range rs {
			got[r.Metric["kind"]+"/"+r.Metric["engine"]+"/"+r.Metric["outcome"]] = r.value()
			if r.Metric["kind"] == "audio_stt" && r.Metric["engine"] == "synthetic" && strings.HasPrefix(r.Metric["outcome"], "failed_") {
				var n int
				fmt.Sscan(r.value(), &n)
				failed += n
			}
		}
		return got["llm/synthetic/completed"] == "1" && fmt.Sprint(failed) == want
	})
	for _, expr := range []string{`process_resident_memory_bytes{job="stoker"}`, `stoker_plugin_resident_memory_bytes{plugin="synthetic-plugin",process="serving"}`, `go_goroutines{job="stoker"}`} {
		prom.waitFor(t, ctx, expr, expr, func(rs []promResult) bool { return len(rs) == 1 && rs[0].value() != "0" })
	}

	// The rule, as Prometheus evaluates it: pending (its for: is 15m).
	alerts := func() []struct {
		Labels map[string]string `json:"labels"`
		State  string            `json:"state"`
	} {
		var data struct {
			Alerts []struct {
				Labels map[string]string `json:"labels"`
				State  string            `json:"state"`
			} `json:"alerts"`
		}
		if err := prom.api(ctx, "/api/v1/alerts", nil, &data); err != nil {
			t.Fatal(err)
		}
		return data.Alerts
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for pending := false; !pending; {
		for _, a := range alerts() {
			pending = pending || (a.Labels["alertname"] == "StokerJobsFailing" && a.State == "pending" && a.Labels["instance"] == target)
		}
		if !pending {
			select {
			case <-ctx.Done():
				t.Fatalf("StokerJobsFailing never went pending; alerts %+v", alerts())
			case <-tick.C:
			}
		}
	}
	old := `rate(stoker_jobs_total{outcome=~"failed_.*"}[15m]) > rate(stoker_jobs_total{outcome="completed"}[15m])`
	if rs, err := prom.query(ctx, old); err != nil || len(rs) != 0 {
		t.Errorf("the old StokerJobsFailing expression: %+v, %v; want nothing (it never matched)", rs, err)
	}

	// Every rule evaluated without error on the real data.
	var rg struct {
		Groups []struct {
			Rules []struct {
				Name      string `json:"name"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
				State     string `json:"state"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := prom.api(ctx, "/api/v1/rules", nil, &rg); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range rg.Groups {
		for _, r := range g.Rules {
			n++
			if r.Health != "ok" {
				t.Errorf("rule %s: health %q, %s", r.Name, r.Health, r.LastError)
			}
			want := "inactive"
			if r.Name == "StokerJobsFailing" {
				want = "pending"
			}
			if r.State != want {
				t.Errorf("rule %s: %s, want %s", r.Name, r.State, want)
			}
		}
	}
	if n != 7 {
		t.Errorf("%d rules loaded, want 7", n)
	}

	t.Run("dashboard", func(t *testing.T) { checkDashboard(t, ctx, prom, target) })
}

// checkDashboard runs every query of the Grafana dashboard on the
// Prometheus that scrapes the agent, and checks that each metric name it
// uses is one the agent exposes.
func checkDashboard(t *testing.T, ctx context.Context, prom *prometheus, target string) {
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "grafana", "stoker-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	exprs, err := dashboardExprs(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(exprs) < 10 {
		t.Fatalf("%d queries in the dashboard", len(exprs))
	}
	var names []string
	if err := prom.api(ctx, "/api/v1/label/__name__/values", url.Values{"match[]": {`{instance="` + target + `"}`}}, &names); err != nil {
		t.Fatal(err)
	}
	exposed := map[string]bool{}
	for _, n := range names {
		exposed[n] = true
	}
	for _, e := range exprs {
		q := strings.NewReplacer("$__rate_interval", "1m", "$instance", ".*").Replace(e)
		if _, err := prom.query(ctx, q); err != nil {
			t.Errorf("dashboard query %s: %v", e, err)
		}
		for _, m := range metricNames(q) {
			if !exposed[m] {
				t.Errorf("dashboard query %s: metric %s is not in the agent's exposition", e, m)
			}
		}
	}
}

// dashboardExprs returns every "expr" in a Grafana dashboard's panels
// (rows included) and the query of every templating variable.
func dashboardExprs(raw []byte) ([]string, error) {
	var d struct {
		Panels     []json.RawMessage `json:"panels"`
		Templating struct {
			List []struct {
				Query any `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	var out []string
	var walk func(ps []json.RawMessage) error
	walk = func(ps []json.RawMessage) error {
		for _, p := range ps {
			var panel struct {
				Panels  []json.RawMessage `json:"panels"`
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			}
			if err := json.Unmarshal(p, &panel); err != nil {
				return err
			}
			for _, tg := range panel.Targets {
				out = append(out, tg.Expr)
			}
			if err := walk(panel.Panels); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(d.Panels); err != nil {
		return nil, err
	}
	for _, v := range d.Templating.List {
		if q, ok := v.Query.(map[string]any); ok {
			if s, ok := q["query"].(string); ok && strings.HasPrefix(s, "label_values(") {
				// label_values(metric, label) is Grafana's, not PromQL: its metric is queried.
				out = append(out, strings.TrimSpace(strings.SplitN(strings.TrimPrefix(s, "label_values("), ",", 2)[0]))
			}
		}
	}
	return out, nil
}

// metricNames returns the metric names a PromQL expression selects: the
// identifiers before a { or standing alone that are not functions,
// keywords or label names.
func metricNames(expr string) []string {
	// Drop label matchers' contents and strings, then take identifiers
	// followed by { or by a non-( character.
	expr = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`).ReplaceAllString(expr, `""`)
	expr = regexp.MustCompile(`\{[^}]*\}`).ReplaceAllString(expr, "{}")
	expr = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`).ReplaceAllString(expr, "")
	expr = regexp.MustCompile(`\[[^\]]*\]`).ReplaceAllString(expr, "")
	var out []string
	for _, m := range regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\(?)`).FindAllStringSubmatch(expr, -1) {
		if m[2] == "(" || slices.Contains([]string{"and", "or", "unless", "bool", "offset"}, m[1]) {
			continue // a function or an operator
		}
		if !slices.Contains(out, m[1]) {
			out = append(out, m[1])
		}
	}
	return out
}

func TestMetricNames(t *testing.T) {
	tests := []struct {
		expr string
		want []string
	}{
		{`sum by (outcome) (rate(stoker_jobs_total{instance=~".*"}[1m]))`, []string{"stoker_jobs_total"}},
		{`histogram_quantile(0.95, sum by (le, kind) (rate(stoker_job_duration_seconds_bucket{outcome="completed"}[5m])))`, []string{"stoker_job_duration_seconds_bucket"}},
		{`sum(rate(a_total[1m])) / sum(rate(b_sum{x="y{z}"}[1m]))`, []string{"a_total", "b_sum"}},
		{`up{job="stoker"} == 0 and on (instance) stoker_paused`, []string{"up", "stoker_paused"}},
		{`count(up)`, []string{"up"}},
	}
	for _, tt := range tests {
		if got := metricNames(tt.expr); !slices.Equal(got, tt.want) {
			t.Errorf("metricNames(%s) = %v, want %v", tt.expr, got, tt.want)
		}
	}
}
