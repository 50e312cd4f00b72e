package localapi

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Tally keeps the job Counters of a Snapshot: the agent calls JobDone
// with each job's outcome and copies Counters into each Snapshot. It also keeps the histograms of job durations and model
// downloads; give it to Config.Collectors for /metrics to serve them. The
// zero value is ready; every method may be called from any goroutine and
// none blocks.
type Tally struct {
	completed, failedRetryable, failedFinal atomic.Uint64
	uploadBytes                             atomic.Uint64

	once         sync.Once
	jobDuration  *prometheus.HistogramVec
	fetchBytes   prometheus.Counter
	fetchSeconds prometheus.Histogram
}

// JobDurationBuckets are the job duration histogram's upper bounds, in
// seconds: from a synthetic job's milliseconds to a video job's hours.
var JobDurationBuckets = []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600}

// DownloadDurationBuckets are the model download histogram's upper bounds,
// in seconds.
var DownloadDurationBuckets = []float64{0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800}

func (t *Tally) init() {
	t.once.Do(func() {
		t.jobDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "stoker_job_duration_seconds",
			Help:    "Jobs from the offer's run to its reported outcome (model fetch, engine run and result delivery), by task kind, engine and outcome.",
			Buckets: JobDurationBuckets,
		}, []string{"kind", "engine", "outcome"})
		t.fetchBytes = prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stoker_model_download_bytes_total",
			Help: "Model file bytes downloaded into the model cache (resumed bytes count once, when fetched).",
		})
		t.fetchSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "stoker_model_download_duration_seconds",
			Help:    "Completed model file downloads by their duration; rate(stoker_model_download_bytes_total) / rate(this _sum) is the download throughput.",
			Buckets: DownloadDurationBuckets,
		})
	})
}

// Job outcomes, the outcome label of stoker_job_duration_seconds (and of
// stoker_jobs_total).
const (
	OutcomeCompleted       = "completed"
	OutcomeFailedRetryable = "failed_retryable"
	OutcomeFailedFinal     = "failed_final"
)

// JobDone counts a job whose outcome (one of the Outcome constants) was
// reported, with resultBytes of binary result delivered, and records how
// long it took, d, from the start of its run to its reported outcome.
// kind is the task kind and engine the engine id it was routed by; both
// are bounded by what the agent admits (a known kind, an engine a plugin
// serves).
func (t *Tally) JobDone(kind, engine, outcome string, resultBytes int64, d time.Duration) {
	t.init()
	switch outcome {
	case OutcomeCompleted:
		t.completed.Add(1)
	case OutcomeFailedRetryable:
		t.failedRetryable.Add(1)
	case OutcomeFailedFinal:
		t.failedFinal.Add(1)
	}
	if resultBytes > 0 {
		t.uploadBytes.Add(uint64(resultBytes))
	}
	t.jobDuration.WithLabelValues(validLabels([]string{kind, engine, outcome})...).Observe(d.Seconds())
}

// Downloaded records one completed model file download: n bytes fetched
// over the network in d.
func (t *Tally) Downloaded(n int64, d time.Duration) {
	t.init()
	if n > 0 {
		t.fetchBytes.Add(float64(n))
	}
	t.fetchSeconds.Observe(d.Seconds())
}

// Describe and Collect make the Tally's histograms a prometheus.Collector
// (the counters reach /metrics through the Snapshot).
func (t *Tally) Describe(ch chan<- *prometheus.Desc) {
	t.init()
	t.jobDuration.Describe(ch)
	t.fetchBytes.Describe(ch)
	t.fetchSeconds.Describe(ch)
}

func (t *Tally) Collect(ch chan<- prometheus.Metric) {
	t.init()
	t.jobDuration.Collect(ch)
	t.fetchBytes.Collect(ch)
	t.fetchSeconds.Collect(ch)
}

// Counters returns the totals now. Jobs.Rejected and PluginRestarts are
// left 0: the studio session counts the offers it refused and the engine
// host the restarts of each plugin, and the Snapshot's adapter copies them.
func (t *Tally) Counters() Counters {
	return Counters{
		Jobs: JobCounters{
			Completed:       t.completed.Load(),
			FailedRetryable: t.failedRetryable.Load(),
			FailedFinal:     t.failedFinal.Load(),
		},
		UploadBytes: t.uploadBytes.Load(),
	}
}
