package localapi

import "sync/atomic"

// Tally keeps the Counters of a Snapshot for an agent whose parts do not
// count for themselves: the agent calls its methods where outcomes happen
// (a Reporter wrapper, an Admit refusal) and copies Counters into each
// Snapshot. The zero value is ready; every method may be called from any
// goroutine and none blocks.
type Tally struct {
	completed, failedRetryable, failedFinal, rejected atomic.Uint64
	uploadBytes                                       atomic.Uint64
}

// Completed counts a job reported complete.
func (t *Tally) Completed() { t.completed.Add(1) }

// Failed counts a job reported as a fail; retryable is the flag sent.
func (t *Tally) Failed(retryable bool) {
	if retryable {
		t.failedRetryable.Add(1)
	} else {
		t.failedFinal.Add(1)
	}
}

// Rejected counts an offer that was not accepted.
func (t *Tally) Rejected() { t.rejected.Add(1) }

// Uploaded counts n result bytes sent to an upload.
func (t *Tally) Uploaded(n int64) {
	if n > 0 {
		t.uploadBytes.Add(uint64(n))
	}
}

// Counters returns the totals now. PluginRestarts is left 0: the engine
// host counts restarts per plugin, and the Snapshot's adapter sums them.
func (t *Tally) Counters() Counters {
	return Counters{
		Jobs: JobCounters{
			Completed:       t.completed.Load(),
			FailedRetryable: t.failedRetryable.Load(),
			FailedFinal:     t.failedFinal.Load(),
			Rejected:        t.rejected.Load(),
		},
		UploadBytes: t.uploadBytes.Load(),
	}
}
