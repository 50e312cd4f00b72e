package agent

import (
	"context"
	"sync"

	"github.com/stokerhq/stoker/supervisor/internal/jobs"
	"github.com/stokerhq/stoker/supervisor/internal/protocol"
	"github.com/stokerhq/stoker/supervisor/internal/studio"
)

// drainRunner stands between the studio session and the job runner: it
// runs every job under the agent's jobs context (which the drain cancels
// while the session stays open to report), and tells the drain when no job
// is admitted or running.
type drainRunner struct {
	inner   *jobs.Runner
	jobsCtx context.Context

	mu     sync.Mutex    // guards n and idleCh
	n      int           // offers admitted whose RunJob has not returned
	idleCh chan struct{} // closed while n == 0
}

var _ studio.JobRunner = (*drainRunner)(nil)

func newDrainRunner(inner *jobs.Runner, jobsCtx context.Context) *drainRunner {
	idle := make(chan struct{})
	close(idle)
	return &drainRunner{inner: inner, jobsCtx: jobsCtx, idleCh: idle}
}

// Admit counts an admitted offer at once: the session starts its job on
// another goroutine after the accept, and a drain that looked between the
// two must still wait for it. (If the accept cannot be sent the job never
// runs and the count stays up; the drain's timeout bounds that.)
func (d *drainRunner) Admit(claim *protocol.JobOfferClaim) error {
	if err := d.inner.Admit(claim); err != nil {
		return err
	}
	d.mu.Lock()
	if d.n == 0 {
		d.idleCh = make(chan struct{})
	}
	d.n++
	d.mu.Unlock()
	return nil
}

// RunJob runs the job under both the session's ctx and the jobs context.
func (d *drainRunner) RunJob(ctx context.Context, claim *protocol.JobOfferClaim, rep studio.Reporter) {
	defer d.done()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(d.jobsCtx, func() { cancel(context.Cause(d.jobsCtx)) })
	defer stop()
	d.inner.RunJob(ctx, claim, rep)
}

func (d *drainRunner) done() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.n--
	if d.n == 0 {
		close(d.idleCh)
	}
}

// idle returns a channel closed while no admitted job is unfinished.
func (d *drainRunner) idle() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.idleCh
}
