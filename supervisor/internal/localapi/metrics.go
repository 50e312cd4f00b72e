package localapi

import (
	"bytes"
	"math"
	"strconv"
	"strings"
	"time"
)

// metricsContentType is the Prometheus text exposition format 0.0.4.
const metricsContentType = "text/plain; version=0.0.4; charset=utf-8"

// writeMetrics renders snap in the Prometheus text exposition format. now
// is the scrape time, for the uptime gauge. Every family has its HELP and
// TYPE lines, even when it has no sample.
func writeMetrics(b *bytes.Buffer, snap *Snapshot, now time.Time) {
	w := promWriter{b: b}

	w.family("stoker_up", "gauge", "1 while the agent serves its local API.")
	w.sample("stoker_up", nil, 1)
	w.family("stoker_build_info", "gauge", "The agent's version, as a label; the value is always 1.")
	w.sample("stoker_build_info", []label{{"version", snap.Version}}, 1)
	w.family("stoker_start_time_seconds", "gauge", "When the agent started, in seconds since the Unix epoch.")
	if !snap.Started.IsZero() {
		w.sample("stoker_start_time_seconds", nil, unixSeconds(snap.Started))
	}
	w.family("stoker_uptime_seconds", "gauge", "Seconds since the agent started.")
	if !snap.Started.IsZero() {
		w.sample("stoker_uptime_seconds", nil, uptime(snap, now).Seconds())
	}

	s := &snap.Session
	w.family("stoker_session_connected", "gauge", "1 while the WebSocket session to the studio is open.")
	w.sample("stoker_session_connected", nil, boolValue(s.Connected))
	w.family("stoker_session_welcomed", "gauge", "1 while the session has been welcomed by the studio.")
	w.sample("stoker_session_welcomed", nil, boolValue(s.Welcomed))
	w.family("stoker_session_state", "gauge", "The session loop's state, as a label; the value is always 1.")
	w.sample("stoker_session_state", []label{{"state", s.State}}, 1)
	w.family("stoker_session_reconnect_attempts", "gauge", "Consecutive failed connects to the studio (0 once welcomed).")
	w.sample("stoker_session_reconnect_attempts", nil, float64(s.Attempt))
	w.family("stoker_sessions_total", "counter", "Sessions that reached the studio's welcome.")
	w.sample("stoker_sessions_total", nil, float64(s.Sessions))
	w.family("stoker_paused", "gauge", "1 while the worker is paused and rejects offers.")
	w.sample("stoker_paused", nil, boolValue(s.Paused))

	c := &snap.Counters
	w.family("stoker_jobs_total", "counter", "Job offers by outcome.")
	for _, o := range []struct {
		name string
		n    uint64
	}{
		{"completed", c.Jobs.Completed},
		{"failed_retryable", c.Jobs.FailedRetryable},
		{"failed_final", c.Jobs.FailedFinal},
		{"rejected", c.Jobs.Rejected},
	} {
		w.sample("stoker_jobs_total", []label{{"outcome", o.name}}, float64(o.n))
	}
	w.family("stoker_upload_bytes_total", "counter", "Result bytes sent to the studio's uploads.")
	w.sample("stoker_upload_bytes_total", nil, float64(c.UploadBytes))

	w.family("stoker_current_job_running", "gauge", "1 while a job is in flight.")
	w.sample("stoker_current_job_running", nil, boolValue(snap.Job != nil))
	w.family("stoker_current_job_progress_ratio", "gauge", "The running job's progress, step/total (0 while idle or unknown).")
	w.sample("stoker_current_job_progress_ratio", nil, snap.Job.Ratio())

	w.family("stoker_advertised_kind", "gauge", "Task kinds offered to the studio now; the value is always 1.")
	for _, k := range snap.Advertised.Kinds {
		w.sample("stoker_advertised_kind", []label{{"kind", k}}, 1)
	}

	names := pluginLabels(snap.Plugins)
	w.family("stoker_plugin_state", "gauge", "1 for the plugin's current state, 0 for the others.")
	for i, p := range snap.Plugins {
		known := false
		for _, st := range pluginStates() {
			known = known || st == p.State
			w.sample("stoker_plugin_state", []label{{"plugin", names[i]}, {"state", st}}, boolValue(st == p.State))
		}
		if !known {
			w.sample("stoker_plugin_state", []label{{"plugin", names[i]}, {"state", p.State}}, 1)
		}
	}
	w.family("stoker_plugin_restarts_total", "counter", "Plugin relaunches after a death.")
	for i, p := range snap.Plugins {
		w.sample("stoker_plugin_restarts_total", []label{{"plugin", names[i]}}, float64(p.Restarts))
	}
	w.family("stoker_plugin_crashes_total", "counter", "Plugin deaths, failed starts included.")
	for i, p := range snap.Plugins {
		w.sample("stoker_plugin_crashes_total", []label{{"plugin", names[i]}}, float64(p.Crashes))
	}
	w.family("stoker_plugin_device_memory_total_bytes", "gauge", "Memory of the device a plugin runs on, as the plugin last described it.")
	for i, p := range snap.Plugins {
		if p.Device.Backend != "" {
			w.sample("stoker_plugin_device_memory_total_bytes", []label{{"plugin", names[i]}, {"backend", p.Device.Backend}}, float64(p.Device.MemoryTotal))
		}
	}
	w.family("stoker_plugin_device_memory_free_bytes", "gauge", "Free memory of the device a plugin runs on, as the plugin last described it.")
	for i, p := range snap.Plugins {
		if p.Device.Backend != "" {
			w.sample("stoker_plugin_device_memory_free_bytes", []label{{"plugin", names[i]}, {"backend", p.Device.Backend}}, float64(p.Device.MemoryFree))
		}
	}
}

// pluginLabels returns the plugin label value for each plugin: its name,
// or, where two plugins share a name (same file name in two directories),
// its path, so that no two series collide.
func pluginLabels(ps []Plugin) []string {
	count := map[string]int{}
	for _, p := range ps {
		count[p.Name]++
	}
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Name
		if count[p.Name] > 1 {
			out[i] = p.Path
		}
	}
	return out
}

type label struct{ name, value string }

// promWriter writes the text format. Names are the package's own
// constants; only label values come from outside, and they are escaped.
type promWriter struct{ b *bytes.Buffer }

func (w promWriter) family(name, typ, help string) {
	w.b.WriteString("# HELP ")
	w.b.WriteString(name)
	w.b.WriteByte(' ')
	w.b.WriteString(escapeHelp(help))
	w.b.WriteString("\n# TYPE ")
	w.b.WriteString(name)
	w.b.WriteByte(' ')
	w.b.WriteString(typ)
	w.b.WriteByte('\n')
}

func (w promWriter) sample(name string, labels []label, v float64) {
	w.b.WriteString(name)
	if len(labels) > 0 {
		w.b.WriteByte('{')
		for i, l := range labels {
			if i > 0 {
				w.b.WriteByte(',')
			}
			w.b.WriteString(l.name)
			w.b.WriteString(`="`)
			w.b.WriteString(escapeLabelValue(l.value))
			w.b.WriteByte('"')
		}
		w.b.WriteByte('}')
	}
	w.b.WriteByte(' ')
	w.b.WriteString(formatValue(v))
	w.b.WriteByte('\n')
}

// escapeLabelValue escapes a label value as the exposition format asks:
// backslash, double quote and line feed. Invalid UTF-8 (the format is
// UTF-8) becomes U+FFFD.
func escapeLabelValue(s string) string { return escape(s, true) }

// escapeHelp escapes HELP text: backslash and line feed.
func escapeHelp(s string) string { return escape(s, false) }

func escape(s string, quote bool) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if !strings.ContainsAny(s, "\\\n\"") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			b.WriteString(`\\`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '"' && quote:
			b.WriteString(`\"`)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func formatValue(v float64) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	}
	if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
		// Counts and byte sizes read best in full: 1048576, not 1.048576e+06.
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// uptime is how long the agent has run at now (0 when Started is unknown
// or in the future).
func uptime(snap *Snapshot, now time.Time) time.Duration {
	if snap.Started.IsZero() {
		return 0
	}
	return max(now.Sub(snap.Started), 0)
}
