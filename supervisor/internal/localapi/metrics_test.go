package localapi

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
)

// promSample is one parsed sample line; label values are unescaped.
type promSample struct {
	name   string
	labels map[string]string
	value  float64
}

var (
	metricNameRE = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelNameRE  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

// parseExposition is a strict reader of the text format as this package
// writes it: every line is a HELP, a TYPE or `name{labels} value`; every
// family has one HELP and one TYPE before its samples, and its samples are
// contiguous; label values use only the \\ \" \n escapes; no series
// repeats; the text is UTF-8 and ends in a newline.
func parseExposition(text string) ([]promSample, error) {
	if !utf8.ValidString(text) {
		return nil, errors.New("not UTF-8")
	}
	if text == "" || !strings.HasSuffix(text, "\n") {
		return nil, errors.New("does not end in a newline")
	}
	help, typ := map[string]bool{}, map[string]string{}
	series := map[string]bool{}
	var out []promSample
	current := "" // the family whose TYPE came last
	for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		n := i + 1
		if strings.HasPrefix(line, "#") {
			f := strings.SplitN(line, " ", 4)
			if len(f) < 4 || (f[1] != "HELP" && f[1] != "TYPE") {
				return nil, fmt.Errorf("line %d: bad comment %q", n, line)
			}
			name := f[2]
			if !metricNameRE.MatchString(name) {
				return nil, fmt.Errorf("line %d: bad metric name %q", n, name)
			}
			if f[1] == "HELP" {
				if help[name] {
					return nil, fmt.Errorf("line %d: second HELP for %s", n, name)
				}
				if strings.Contains(strings.ReplaceAll(strings.ReplaceAll(f[3], `\\`, ""), `\n`, ""), `\`) {
					return nil, fmt.Errorf("line %d: bad escape in HELP", n)
				}
				help[name] = true
				continue
			}
			if _, dup := typ[name]; dup {
				return nil, fmt.Errorf("line %d: second TYPE for %s", n, name)
			}
			switch f[3] {
			case "counter", "gauge", "untyped", "histogram", "summary":
			default:
				return nil, fmt.Errorf("line %d: bad type %q", n, f[3])
			}
			if !help[name] {
				return nil, fmt.Errorf("line %d: TYPE for %s before its HELP", n, name)
			}
			typ[name], current = f[3], name
			continue
		}
		s, key, err := parseSample(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		fam := familyOf(s.name, typ)
		if _, ok := typ[fam]; !ok {
			return nil, fmt.Errorf("line %d: sample of %s has no TYPE/HELP", n, s.name)
		}
		if fam != current {
			return nil, fmt.Errorf("line %d: sample of %s outside its family", n, s.name)
		}
		if typ[fam] == "counter" && !strings.HasSuffix(s.name, "_total") {
			return nil, fmt.Errorf("line %d: counter %s does not end in _total", n, s.name)
		}
		if series[key] {
			return nil, fmt.Errorf("line %d: series %s repeats", n, key)
		}
		series[key] = true
		out = append(out, s)
	}
	return out, nil
}

// familyOf is the family a sample name belongs to: itself, or for a
// histogram's or summary's _bucket, _sum and _count, the name without the
// suffix.
func familyOf(name string, typ map[string]string) string {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if t := typ[base]; ok && (t == "histogram" || t == "summary") && (suffix != "_bucket" || t == "histogram") {
			return base
		}
	}
	return name
}

// parseSample reads `name{l="v",...} value`, returning the sample and a
// key naming its series.
func parseSample(line string) (promSample, string, error) {
	s := promSample{labels: map[string]string{}}
	end := strings.IndexAny(line, "{ ")
	if end <= 0 {
		return s, "", fmt.Errorf("bad sample %q", line)
	}
	s.name = line[:end]
	if !metricNameRE.MatchString(s.name) {
		return s, "", fmt.Errorf("bad metric name %q", s.name)
	}
	rest := line[end:]
	var keys []string
	if rest[0] == '{' {
		rest = rest[1:]
		for {
			if strings.HasPrefix(rest, "}") {
				rest = rest[1:]
				break
			}
			eq := strings.Index(rest, `="`)
			if eq <= 0 {
				return s, "", fmt.Errorf("bad label in %q", line)
			}
			lname := rest[:eq]
			if !labelNameRE.MatchString(lname) {
				return s, "", fmt.Errorf("bad label name %q", lname)
			}
			if _, dup := s.labels[lname]; dup {
				return s, "", fmt.Errorf("label %s twice", lname)
			}
			rest = rest[eq+2:]
			var val strings.Builder
			closed := false
			for len(rest) > 0 && !closed {
				c := rest[0]
				switch c {
				case '\\':
					if len(rest) < 2 {
						return s, "", fmt.Errorf("dangling escape in %q", line)
					}
					switch rest[1] {
					case '\\':
						val.WriteByte('\\')
					case '"':
						val.WriteByte('"')
					case 'n':
						val.WriteByte('\n')
					default:
						return s, "", fmt.Errorf("bad escape \\%c in %q", rest[1], line)
					}
					rest = rest[2:]
				case '"':
					closed = true
					rest = rest[1:]
				default:
					val.WriteByte(c)
					rest = rest[1:]
				}
			}
			if !closed {
				return s, "", fmt.Errorf("unterminated label value in %q", line)
			}
			s.labels[lname] = val.String()
			keys = append(keys, lname+"="+strconv.Quote(val.String()))
			if strings.HasPrefix(rest, ",") {
				rest = rest[1:]
			} else if !strings.HasPrefix(rest, "}") {
				return s, "", fmt.Errorf("want , or } in %q", line)
			}
		}
	}
	if !strings.HasPrefix(rest, " ") || strings.Contains(rest[1:], " ") {
		return s, "", fmt.Errorf("want one space then the value in %q", line)
	}
	v, err := strconv.ParseFloat(rest[1:], 64)
	if err != nil {
		return s, "", fmt.Errorf("bad value in %q: %w", line, err)
	}
	s.value = v
	return s, s.name + "{" + strings.Join(keys, ",") + "}", nil
}

// TestParseExpositionRejects proves the checker catches what it claims to.
func TestParseExpositionRejects(t *testing.T) {
	const ok = "# HELP a_total x\n# TYPE a_total counter\na_total{l=\"v\"} 1\n"
	if _, err := parseExposition(ok); err != nil {
		t.Fatalf("good text refused: %v", err)
	}
	tests := []struct{ name, text string }{
		{"no newline at end", strings.TrimSuffix(ok, "\n")},
		{"no HELP", "# TYPE a gauge\na 1\n"},
		{"no TYPE", "# HELP a x\na 1\n"},
		{"no comments at all", "a 1\n"},
		{"raw quote in value", "# HELP a x\n# TYPE a gauge\na{l=\"x\"y\"} 1\n"},
		{"raw newline splits a line", "# HELP a x\n# TYPE a gauge\na{l=\"x\ny\"} 1\n"},
		{"bad escape", "# HELP a x\n# TYPE a gauge\na{l=\"x\\qy\"} 1\n"},
		{"unterminated", "# HELP a x\n# TYPE a gauge\na{l=\"x} 1\n"},
		{"bad value", "# HELP a x\n# TYPE a gauge\na one\n"},
		{"bad name", "# HELP 1a x\n# TYPE 1a gauge\n1a 1\n"},
		{"repeated series", "# HELP a x\n# TYPE a gauge\na 1\na 2\n"},
		{"family split", "# HELP a x\n# TYPE a gauge\n# HELP b x\n# TYPE b gauge\nb 1\na 1\n"},
		{"counter without _total", "# HELP a x\n# TYPE a counter\na 1\n"},
		{"bad type", "# HELP a x\n# TYPE a meter\na 1\n"},
		{"invalid UTF-8", "# HELP a x\n# TYPE a gauge\na{l=\"\xff\"} 1\n"},
		{"two values", "# HELP a x\n# TYPE a gauge\na 1 2 3\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := parseExposition(tt.text); err == nil {
				t.Errorf("accepted %q", tt.text)
			}
		})
	}
}

// find returns the value of the one sample with name and labels.
func find(t *testing.T, samples []promSample, name string, labels map[string]string) float64 {
	t.Helper()
	var hits []float64
	for _, s := range samples {
		if s.name != name || len(s.labels) != len(labels) {
			continue
		}
		match := true
		for k, v := range labels {
			match = match && s.labels[k] == v
		}
		if match {
			hits = append(hits, s.value)
		}
	}
	if len(hits) != 1 {
		t.Fatalf("%s%v: %d samples, want 1", name, labels, len(hits))
	}
	return hits[0]
}

func scrape(t *testing.T, ts *testServer) []promSample {
	t.Helper()
	code, h, body := ts.get(t, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics = %d %s", code, body)
	}
	if got := h.Get("Content-Type"); !strings.HasPrefix(got, "text/plain; version=0.0.4; charset=utf-8") {
		t.Errorf("Content-Type = %q, want the text format 0.0.4", got)
	}
	samples, err := parseExposition(body)
	if err != nil {
		t.Fatalf("exposition: %v\n%s", err, body)
	}
	return samples
}

func TestMetricsValues(t *testing.T) {
	src := &fakeSource{snap: richSnapshot()}
	src.snap.Session.Paused = true
	ts := startServer(t, src, nil)
	samples := scrape(t, ts)

	tests := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"stoker_up", nil, 1},
		{"stoker_build_info", map[string]string{"version": "1.2.3"}, 1},
		{"stoker_start_time_seconds", nil, float64(fixedNow.Add(-90e9).Unix())},
		{"stoker_uptime_seconds", nil, 90},
		{"stoker_session_connected", nil, 1},
		{"stoker_session_welcomed", nil, 1},
		{"stoker_session_state", map[string]string{"state": "welcomed"}, 1},
		{"stoker_session_reconnect_attempts", nil, 0},
		{"stoker_sessions_total", nil, 3},
		{"stoker_paused", nil, 1},
		{"stoker_jobs_total", map[string]string{"outcome": "completed"}, 10},
		{"stoker_jobs_total", map[string]string{"outcome": "failed_retryable"}, 2},
		{"stoker_jobs_total", map[string]string{"outcome": "failed_final"}, 3},
		{"stoker_jobs_total", map[string]string{"outcome": "rejected"}, 4},
		{"stoker_upload_bytes_total", nil, 1 << 20},
		{"stoker_current_job_running", nil, 1},
		{"stoker_current_job_progress_ratio", nil, 0.25},
		{"stoker_advertised_kind", map[string]string{"kind": "llm"}, 1},
		{"stoker_plugin_state", map[string]string{"plugin": "llamacpp-plugin", "state": "ready"}, 1},
		{"stoker_plugin_state", map[string]string{"plugin": "llamacpp-plugin", "state": "quarantined"}, 0},
		{"stoker_plugin_state", map[string]string{"plugin": "whisper-plugin", "state": "quarantined"}, 1},
		{"stoker_plugin_state", map[string]string{"plugin": "whisper-plugin", "state": "ready"}, 0},
		{"stoker_plugin_restarts_total", map[string]string{"plugin": "llamacpp-plugin"}, 1},
		{"stoker_plugin_restarts_total", map[string]string{"plugin": "whisper-plugin"}, 2},
		{"stoker_plugin_crashes_total", map[string]string{"plugin": "whisper-plugin"}, 3},
		{"stoker_plugin_device_memory_total_bytes", map[string]string{"plugin": "llamacpp-plugin", "backend": "cuda"}, 80 << 30},
		{"stoker_plugin_device_memory_free_bytes", map[string]string{"plugin": "llamacpp-plugin", "backend": "cuda"}, 60 << 30},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.name, tt.labels), func(t *testing.T) {
			if got := find(t, samples, tt.name, tt.labels); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
	// One state sample per known state per plugin, exactly one of them 1.
	for _, p := range []string{"llamacpp-plugin", "whisper-plugin"} {
		n, ones := 0, 0.0
		for _, s := range samples {
			if s.name == "stoker_plugin_state" && s.labels["plugin"] == p {
				n++
				ones += s.value
			}
		}
		if n != len(pluginStates()) || ones != 1 {
			t.Errorf("%s: %d state samples summing to %v, want %d summing to 1", p, n, ones, len(pluginStates()))
		}
	}
}

// TestMetricsIdleNode: the zero snapshot is a valid exposition with no job,
// plugin or uptime samples (a family with no sample is left out, as
// client_golang does), and the counters at 0.
func TestMetricsIdleNode(t *testing.T) {
	ts := startServer(t, nil, nil)
	samples := scrape(t, ts)
	if got := find(t, samples, "stoker_current_job_running", nil); got != 0 {
		t.Errorf("job running = %v, want 0", got)
	}
	if got := find(t, samples, "stoker_current_job_progress_ratio", nil); got != 0 {
		t.Errorf("progress = %v, want 0", got)
	}
	for _, s := range samples {
		if strings.HasPrefix(s.name, "stoker_plugin_") || s.name == "stoker_uptime_seconds" || s.name == "stoker_advertised_kind" {
			t.Errorf("idle node has sample %s%v", s.name, s.labels)
		}
	}
	for _, o := range []string{"completed", "failed_retryable", "failed_final", "rejected"} {
		if got := find(t, samples, "stoker_jobs_total", map[string]string{"outcome": o}); got != 0 {
			t.Errorf("jobs %s = %v, want 0", o, got)
		}
	}
}

// TestMetricsHostileLabels: names and states with quotes, backslashes,
// newlines and invalid UTF-8 stay inside their label value and come back
// exactly (invalid bytes as U+FFFD).
func TestMetricsHostileLabels(t *testing.T) {
	hostile := []string{
		`evil"} stoker_up 0 #`,
		`back\slash\`,
		"new\nline stoker_paused 1",
		"tail\\",
		"\\n literal",
		"bad\xffutf8",
	}
	snap := Snapshot{Version: "v\"1\n\\", Session: Session{State: "state\n\"x\""}}
	for i, name := range hostile {
		snap.Plugins = append(snap.Plugins, Plugin{Name: name, Path: fmt.Sprint("/p/", i), State: "odd\"state\n"})
	}
	ts := startServer(t, &fakeSource{snap: snap}, nil)
	samples := scrape(t, ts)
	for _, name := range hostile {
		want := strings.ToValidUTF8(name, "\uFFFD")
		if got := find(t, samples, "stoker_plugin_restarts_total", map[string]string{"plugin": want}); got != 0 {
			t.Errorf("%q restarts = %v", want, got)
		}
		if got := find(t, samples, "stoker_plugin_state", map[string]string{"plugin": want, "state": "odd\"state\n"}); got != 1 {
			t.Errorf("%q unknown state = %v, want 1", want, got)
		}
	}
	find(t, samples, "stoker_build_info", map[string]string{"version": "v\"1\n\\"})
	find(t, samples, "stoker_session_state", map[string]string{"state": "state\n\"x\""})
	if got := find(t, samples, "stoker_up", nil); got != 1 {
		t.Errorf("stoker_up = %v: a label value broke out of its line", got)
	}
}

// TestMetricsDuplicatePluginNames: two plugins with one file name in two
// directories are told apart by path, so no series repeats.
func TestMetricsDuplicatePluginNames(t *testing.T) {
	snap := Snapshot{Plugins: []Plugin{
		{Name: "x-plugin", Path: "/a/x-plugin", State: "ready", Restarts: 1},
		{Name: "x-plugin", Path: "/b/x-plugin", State: "ready", Restarts: 2},
		{Name: "y-plugin", Path: "/a/y-plugin", State: "ready", Restarts: 3},
	}}
	ts := startServer(t, &fakeSource{snap: snap}, nil)
	samples := scrape(t, ts) // fails on a repeated series
	for _, tt := range []struct {
		plugin string
		want   float64
	}{{"/a/x-plugin", 1}, {"/b/x-plugin", 2}, {"y-plugin", 3}} {
		if got := find(t, samples, "stoker_plugin_restarts_total", map[string]string{"plugin": tt.plugin}); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.plugin, got, tt.want)
		}
	}
}

// TestMetricsHistograms: the Tally's job durations (by kind, engine and
// outcome) and model downloads are served when it is one of the
// Collectors, as histograms with cumulative buckets.
func TestMetricsHistograms(t *testing.T) {
	tally := &Tally{}
	ts := startServer(t, nil, func(c *Config) { c.Collectors = []prometheus.Collector{tally} })
	tally.JobDone("llm", "llama-cpp", OutcomeCompleted, 0, 3*time.Second)
	tally.JobDone("llm", "llama-cpp", OutcomeCompleted, 0, 40*time.Second)
	tally.JobDone("image", "sd-cpp", OutcomeFailedRetryable, 0, 200*time.Millisecond)
	tally.Downloaded(3<<20, 2*time.Second)
	tally.Downloaded(1<<20, 500*time.Millisecond)
	samples := scrape(t, ts)

	llm := map[string]string{"kind": "llm", "engine": "llama-cpp", "outcome": "completed"}
	if got := find(t, samples, "stoker_job_duration_seconds_count", llm); got != 2 {
		t.Errorf("llm count = %v, want 2", got)
	}
	if got := find(t, samples, "stoker_job_duration_seconds_sum", llm); got != 43 {
		t.Errorf("llm sum = %v, want 43", got)
	}
	for le, want := range map[string]float64{"2.5": 0, "5": 1, "30": 1, "60": 2, "+Inf": 2} {
		l := map[string]string{"le": le}
		for k, v := range llm {
			l[k] = v
		}
		if got := find(t, samples, "stoker_job_duration_seconds_bucket", l); got != want {
			t.Errorf("llm bucket le=%s = %v, want %v", le, got, want)
		}
	}
	img := map[string]string{"kind": "image", "engine": "sd-cpp", "outcome": "failed_retryable"}
	if got := find(t, samples, "stoker_job_duration_seconds_count", img); got != 1 {
		t.Errorf("image count = %v, want 1", got)
	}
	if got := find(t, samples, "stoker_model_download_bytes_total", nil); got != 4<<20 {
		t.Errorf("download bytes = %v, want %v", got, 4<<20)
	}
	if got := find(t, samples, "stoker_model_download_duration_seconds_sum", nil); got != 2.5 {
		t.Errorf("download seconds = %v, want 2.5", got)
	}
	if got := find(t, samples, "stoker_model_download_duration_seconds_count", nil); got != 2 {
		t.Errorf("downloads = %v, want 2", got)
	}
}

// TestMetricsProcess: the agent process's CPU, memory and descriptors and
// the Go runtime are served, and a plugin's resident memory and CPU time
// are read from /proc by its pids, serving and spare (here, this test's own
// process).
func TestMetricsProcess(t *testing.T) {
	snap := Snapshot{Plugins: []Plugin{
		{Name: "self-plugin", Path: "/p/self-plugin", State: "ready", Pid: os.Getpid(), SparePid: os.Getpid()},
		{Name: "stopped-plugin", Path: "/p/stopped-plugin", State: "stopped"},
	}}
	ts := startServer(t, &fakeSource{snap: snap}, nil)
	samples := scrape(t, ts)
	for _, name := range []string{"process_resident_memory_bytes", "process_open_fds", "process_start_time_seconds", "go_goroutines"} {
		if got := find(t, samples, name, nil); got <= 0 {
			t.Errorf("%s = %v, want > 0", name, got)
		}
	}
	find(t, samples, "process_cpu_seconds_total", nil)
	for _, role := range []string{"serving", "spare"} {
		self := map[string]string{"plugin": "self-plugin", "process": role}
		if got := find(t, samples, "stoker_plugin_resident_memory_bytes", self); got < 1<<20 {
			t.Errorf("plugin %s rss = %v, want at least 1 MiB", role, got)
		}
		find(t, samples, "stoker_plugin_cpu_seconds_total", self)
	}
	for _, s := range samples {
		if s.labels["plugin"] == "stopped-plugin" && (s.name == "stoker_plugin_resident_memory_bytes" || s.name == "stoker_plugin_cpu_seconds_total") {
			t.Errorf("a plugin with no process has %s", s.name)
		}
	}
}

func BenchmarkMetrics(b *testing.B) {
	snap := richSnapshot()
	for i := range 20 {
		p := snap.Plugins[0]
		p.Name = fmt.Sprint("plugin-", i)
		snap.Plugins = append(snap.Plugins, p)
	}
	h, err := newMetricsHandler(&fakeSource{snap: snap}, func() time.Time { return fixedNow }, hclog.NewNullLogger(), []prometheus.Collector{&Tally{}})
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/metrics", nil)
	b.ReportAllocs()
	var n int
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		n = w.Body.Len()
	}
	b.SetBytes(int64(n))
}
