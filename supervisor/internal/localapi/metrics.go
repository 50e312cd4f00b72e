package localapi

import (
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/procfs"
)

// The metrics are served by prometheus/client_golang: its registry renders
// the exposition (text 0.0.4, or OpenMetrics and protobuf when the scraper
// asks for them), its histograms bucket job durations and downloads, and
// its collectors read the agent process's CPU, memory and descriptors and
// the Go runtime. The node's own state is read from a Snapshot at each
// scrape by snapshotCollector, under the names it has always had.

// newMetricsHandler returns the /metrics handler: the snapshot's metrics,
// the Go runtime's and the process's, and extra (the agent's Tally).
func newMetricsHandler(src Source, now func() time.Time, log hclog.Logger, extra []prometheus.Collector) (http.Handler, error) {
	reg := prometheus.NewRegistry()
	cs := append([]prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		snapshotCollector{src: src, now: now, proc: readProcStat},
	}, extra...)
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		// A collector that fails (one bad series) costs its own samples,
		// not the scrape.
		ErrorHandling: promhttp.ContinueOnError,
		ErrorLog:      log.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Warn}),
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	}), nil
}

// Descriptions of the snapshot's metrics, in exposition order.
var (
	descUp                = prometheus.NewDesc("stoker_up", "1 while the agent serves its local API.", nil, nil)
	descBuildInfo         = prometheus.NewDesc("stoker_build_info", "The agent's version, as a label; the value is always 1.", []string{"version"}, nil)
	descStartTime         = prometheus.NewDesc("stoker_start_time_seconds", "When the agent started, in seconds since the Unix epoch.", nil, nil)
	descUptime            = prometheus.NewDesc("stoker_uptime_seconds", "Seconds since the agent started.", nil, nil)
	descConnected         = prometheus.NewDesc("stoker_session_connected", "1 while the WebSocket session to the studio is open.", nil, nil)
	descWelcomed          = prometheus.NewDesc("stoker_session_welcomed", "1 while the session has been welcomed by the studio.", nil, nil)
	descSessionState      = prometheus.NewDesc("stoker_session_state", "The session loop's state, as a label; the value is always 1.", []string{"state"}, nil)
	descReconnects        = prometheus.NewDesc("stoker_session_reconnect_attempts", "Consecutive failed connects to the studio (0 once welcomed).", nil, nil)
	descSessions          = prometheus.NewDesc("stoker_sessions_total", "Sessions that reached the studio's welcome.", nil, nil)
	descPaused            = prometheus.NewDesc("stoker_paused", "1 while the worker is paused and rejects offers.", nil, nil)
	descJobs              = prometheus.NewDesc("stoker_jobs_total", "Job offers by outcome.", []string{"outcome"}, nil)
	descUploadBytes       = prometheus.NewDesc("stoker_upload_bytes_total", "Bytes of the binary results delivered to the studio (once per result, however many upload attempts).", nil, nil)
	descJobRunning        = prometheus.NewDesc("stoker_current_job_running", "1 while a job is in flight.", nil, nil)
	descJobProgress       = prometheus.NewDesc("stoker_current_job_progress_ratio", "The running job's progress, step/total (0 while idle or unknown).", nil, nil)
	descAdvertisedKind    = prometheus.NewDesc("stoker_advertised_kind", "Task kinds offered to the studio now; the value is always 1.", []string{"kind"}, nil)
	descPluginState       = prometheus.NewDesc("stoker_plugin_state", "1 for the plugin's current state, 0 for the others.", []string{"plugin", "state"}, nil)
	descPluginRestarts    = prometheus.NewDesc("stoker_plugin_restarts_total", "Plugin relaunches after a death.", []string{"plugin"}, nil)
	descPluginCrashes     = prometheus.NewDesc("stoker_plugin_crashes_total", "Plugin deaths, failed starts included.", []string{"plugin"}, nil)
	descPluginDevTotal    = prometheus.NewDesc("stoker_plugin_device_memory_total_bytes", "Memory of the device a plugin runs on, as the plugin last described it.", []string{"plugin", "backend"}, nil)
	descPluginDevFree     = prometheus.NewDesc("stoker_plugin_device_memory_free_bytes", "Free memory of the device a plugin runs on, as the plugin last described it.", []string{"plugin", "backend"}, nil)
	descPluginRSS         = prometheus.NewDesc("stoker_plugin_resident_memory_bytes", "Resident memory of the plugin's processes, serving and warm spare, from /proc at the scrape.", []string{"plugin", "process"}, nil)
	descPluginCPU         = prometheus.NewDesc("stoker_plugin_cpu_seconds_total", "User and system CPU time of the plugin's processes, serving and warm spare, from /proc (it starts again from 0 with each new process).", []string{"plugin", "process"}, nil)
	descLocalJobs         = prometheus.NewDesc("stoker_local_jobs_total", "Local jobs (the local API's, apart from the studio's) by outcome: completed, failed, or refused before they ran.", []string{"outcome"}, nil)
	descLocalRunSeconds   = prometheus.NewDesc("stoker_local_job_run_seconds_total", "Time local jobs held the node's job slot, in all.", nil, nil)
	descLocalRunning      = prometheus.NewDesc("stoker_local_jobs_running", "1 while a local job holds the node's job slot.", nil, nil)
	descLocalWaiting      = prometheus.NewDesc("stoker_local_jobs_waiting", "Local requests waiting for the node's job slot.", nil, nil)
	snapshotDescriptions  = []*prometheus.Desc{descLocalJobs, descLocalRunSeconds, descLocalRunning, descLocalWaiting, descUp, descBuildInfo, descStartTime, descUptime, descConnected, descWelcomed, descSessionState, descReconnects, descSessions, descPaused, descJobs, descUploadBytes, descJobRunning, descJobProgress, descAdvertisedKind, descPluginState, descPluginRestarts, descPluginCrashes, descPluginDevTotal, descPluginDevFree, descPluginRSS, descPluginCPU}
	jobOutcomeLabelValues = []string{OutcomeCompleted, OutcomeFailedRetryable, OutcomeFailedFinal, "rejected"}
)

// procStat is what the metrics read of a plugin's process: resident bytes
// and CPU seconds; ok false when the process cannot be read (gone, or not
// Linux).
type procStat func(pid int) (rss, cpu float64, ok bool)

func readProcStat(pid int) (rss, cpu float64, ok bool) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0, 0, false
	}
	st, err := p.Stat()
	if err != nil {
		return 0, 0, false
	}
	return float64(st.ResidentMemory()), st.CPUTime(), true
}

// snapshotCollector turns one Snapshot per scrape into metrics.
type snapshotCollector struct {
	src  Source
	now  func() time.Time
	proc procStat
}

func (c snapshotCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range snapshotDescriptions {
		ch <- d
	}
}

func (c snapshotCollector) Collect(ch chan<- prometheus.Metric) {
	snap := c.src.Snapshot()
	now := c.now()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, validLabels(labels)...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, validLabels(labels)...)
	}

	gauge(descUp, 1)
	gauge(descBuildInfo, 1, snap.Version)
	if !snap.Started.IsZero() {
		gauge(descStartTime, unixSeconds(snap.Started))
		gauge(descUptime, uptime(&snap, now).Seconds())
	}

	s := &snap.Session
	gauge(descConnected, boolValue(s.Connected))
	gauge(descWelcomed, boolValue(s.Welcomed))
	gauge(descSessionState, 1, s.State)
	gauge(descReconnects, float64(s.Attempt))
	counter(descSessions, float64(s.Sessions))
	gauge(descPaused, boolValue(s.Paused))

	jc := &snap.Counters.Jobs
	for i, n := range []uint64{jc.Completed, jc.FailedRetryable, jc.FailedFinal, jc.Rejected} {
		counter(descJobs, float64(n), jobOutcomeLabelValues[i])
	}
	counter(descUploadBytes, float64(snap.Counters.UploadBytes))

	if l := snap.Local; l != nil {
		counter(descLocalJobs, float64(l.Completed), "completed")
		counter(descLocalJobs, float64(l.Failed), "failed")
		counter(descLocalJobs, float64(l.Refused), "refused")
		counter(descLocalRunSeconds, l.RunSeconds)
		gauge(descLocalRunning, float64(l.Running))
		gauge(descLocalWaiting, float64(l.Waiting))
	}

	gauge(descJobRunning, boolValue(snap.Job != nil))
	gauge(descJobProgress, snap.Job.Ratio())

	for _, k := range snap.Advertised.Kinds {
		gauge(descAdvertisedKind, 1, k)
	}

	names := pluginLabels(snap.Plugins)
	for i, p := range snap.Plugins {
		known := false
		for _, st := range pluginStates() {
			known = known || st == p.State
			gauge(descPluginState, boolValue(st == p.State), names[i], st)
		}
		if !known {
			gauge(descPluginState, 1, names[i], p.State)
		}
		counter(descPluginRestarts, float64(p.Restarts), names[i])
		counter(descPluginCrashes, float64(p.Crashes), names[i])
		if p.Device.Backend != "" {
			gauge(descPluginDevTotal, float64(p.Device.MemoryTotal), names[i], p.Device.Backend)
			gauge(descPluginDevFree, float64(p.Device.MemoryFree), names[i], p.Device.Backend)
		}
		for _, pp := range []struct {
			pid  int
			role string
		}{{p.Pid, "serving"}, {p.SparePid, "spare"}} {
			if pp.pid <= 0 {
				continue
			}
			if rss, cpu, ok := c.proc(pp.pid); ok {
				gauge(descPluginRSS, rss, names[i], pp.role)
				counter(descPluginCPU, cpu, names[i], pp.role)
			}
		}
	}
}

// validLabels makes label values valid UTF-8 (invalid bytes become
// U+FFFD): the registry refuses a metric whose label value is not, and a
// plugin's file name or a state is not ours to trust.
func validLabels(vs []string) []string {
	for i, v := range vs {
		vs[i] = strings.ToValidUTF8(v, "\uFFFD")
	}
	return vs
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
