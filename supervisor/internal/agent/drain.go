package agent

import (
	"context"
	"sync"
	"time"

	"github.com/stokerhq/stoker/supervisor/internal/jobs"
	"github.com/stokerhq/stoker/supervisor/internal/protocol"
	"github.com/stokerhq/stoker/supervisor/internal/studio"
)

// acceptBound is how long an admitted offer may take to reach RunJob (the
// session sends the accept in between, bounded by its write timeout, 10s):
// an admitted offer whose accept could not be sent never runs, and the
// drain stops waiting for it after this long.
const acceptBound = 15 * time.Second

// drainRunner stands between the studio session and the job runner: it
// runs every job under the agent's jobs context (which the drain cancels
// while the session stays open to report), and tells the drain when no job
// is admitted or running.
type drainRunner struct {
	inner   *jobs.Runner
	jobsCtx context.Context

	mu       sync.Mutex    // guards all below
	admitted []time.Time   // admitted offers not yet in RunJob, oldest first
	running  int           // RunJob calls in progress
	changed  chan struct{} // closed and replaced on every change
}

var _ studio.JobRunner = (*drainRunner)(nil)

func newDrainRunner(inner *jobs.Runner, jobsCtx context.Context) *drainRunner {
	return &drainRunner{inner: inner, jobsCtx: jobsCtx, changed: make(chan struct{})}
}

func (d *drainRunner) changedLocked() {
	close(d.changed)
	d.changed = make(chan struct{})
}

// Admit counts an admitted offer at once: the session starts its job on
// another goroutine after the accept, and a drain that looked between the
// two must still wait for it.
func (d *drainRunner) Admit(claim *protocol.JobOfferClaim) error {
	if err := d.inner.Admit(claim); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.admitted = append(d.admitted, time.Now())
	d.changedLocked()
	return nil
}

// RunJob runs the job under both the session's ctx and the jobs context.
func (d *drainRunner) RunJob(ctx context.Context, claim *protocol.JobOfferClaim, rep studio.Reporter) {
	d.mu.Lock()
	if len(d.admitted) > 0 {
		d.admitted = d.admitted[1:]
	}
	d.running++
	d.changedLocked()
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.running--
		d.changedLocked()
		d.mu.Unlock()
	}()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(d.jobsCtx, func() { cancel(context.Cause(d.jobsCtx)) })
	defer stop()
	d.inner.RunJob(ctx, claim, rep)
}

// waitIdle blocks until no job runs and no admitted offer younger than
// acceptBound is waiting to run, or ctx ends; it reports whether idle.
func (d *drainRunner) waitIdle(ctx context.Context) bool {
	for {
		d.mu.Lock()
		now := time.Now()
		for len(d.admitted) > 0 && now.Sub(d.admitted[0]) >= acceptBound {
			d.admitted = d.admitted[1:] // its accept was never sent
		}
		idle := d.running == 0 && len(d.admitted) == 0
		ch := d.changed
		var expiry time.Duration
		if len(d.admitted) > 0 {
			expiry = acceptBound - now.Sub(d.admitted[0])
		}
		d.mu.Unlock()
		if idle {
			return true
		}
		var timeout <-chan time.Time
		if expiry > 0 {
			t := time.NewTimer(expiry)
			timeout = t.C
			defer t.Stop()
		}
		select {
		case <-ch:
		case <-timeout:
		case <-ctx.Done():
			return false
		}
	}
}
