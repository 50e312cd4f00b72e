package studio

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

// TestShutdownWaitsForTheJob: Shutdown refuses offers at once (paused, and
// the heartbeat says so), lets the running job report, counts it, then
// ends the session with close 1000 and makes Run return nil.
func TestShutdownWaitsForTheJob(t *testing.T) {
	st := newTestStudio(t)
	release := make(chan struct{})
	w := startWorker(t, st, nil)
	w.runner.run = func(ctx context.Context, c *protocol.JobOfferClaim, rep Reporter) {
		<-release
		if err := rep.CompleteJSON(ctx, json.RawMessage(`{"ok":true}`), c.Task.Prompt()); err != nil {
			t.Errorf("CompleteJSON: %v", err)
		}
	}
	sc := st.accept(t)
	sc.welcome(t)
	sc.send(t, offer("job-1"))
	nextOf[protocol.Accept](t, sc)
	waitFor(t, w.runner.started, "RunJob")

	shut := make(chan error, 1)
	go func() { shut <- w.c.Shutdown(context.Background()) }()
	eventually(t, "heartbeats to say autoEnabled:false", func() bool { return !w.c.capabilities().AutoEnabled })
	sc.send(t, offer("job-2"))
	for {
		if rej, ok := sc.next(t).(protocol.Reject); ok {
			if want := (protocol.Reject{JobID: "job-2", Reason: protocol.ReasonPaused, Code: protocol.RejectPaused}); rej != want {
				t.Errorf("reject = %+v, want %+v", rej, want)
			}
			break
		}
	}
	close(release)
	if cj := nextOf[protocol.CompleteJSON](t, sc); cj.JobID != "job-1" {
		t.Errorf("completeJson for %q", cj.JobID)
	}
	if err := waitFor(t, shut, "Shutdown"); err != nil {
		t.Errorf("Shutdown = %v, want nil: the job finished", err)
	}
	if err := w.result(t); err != nil {
		t.Errorf("Run = %v, want nil after Shutdown", err)
	}
	if err := sc.waitClosed(t); err == nil || !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
		t.Errorf("session ended with %v, want close 1000", err)
	}
	if out := waitFor(t, w.outcomes, "JobDone"); !out.Reported || out.Err != nil {
		t.Errorf("JobDone got %+v, want a reported completion", out)
	}
}

// TestShutdownDeadlineCancelsTheJob: when Shutdown's ctx ends first, the
// job is cancelled with its cause and reports its failure over the session
// that is still open; Shutdown returns ctx's error.
func TestShutdownDeadlineCancelsTheJob(t *testing.T) {
	st := newTestStudio(t)
	w := startWorker(t, st, nil)
	w.runner.runOutcome = func(ctx context.Context, c *protocol.JobOfferClaim, rep Reporter) Outcome {
		<-ctx.Done()
		err := rep.Fail(context.WithoutCancel(ctx), context.Cause(ctx).Error(), true)
		if err != nil {
			t.Errorf("Fail: %v", err)
		}
		return Outcome{Err: context.Cause(ctx), Retryable: true, Reported: err == nil, ReportErr: err}
	}
	sc := st.accept(t)
	sc.welcome(t)
	sc.send(t, offer("job-1"))
	nextOf[protocol.Accept](t, sc)
	waitFor(t, w.runner.started, "RunJob")

	cause := errors.New("drain timeout 1ms passed")
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(cause)
	if err := w.c.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown = %v, want the ctx's error", err)
	}
	if f := nextOf[protocol.Fail](t, sc); f.JobID != "job-1" || f.Error != cause.Error() || !f.Retryable {
		t.Errorf("fail = %+v, want job-1 retryable with the cause", f)
	}
	if err := w.result(t); err != nil {
		t.Errorf("Run = %v, want nil after Shutdown", err)
	}
	if out := waitFor(t, w.outcomes, "JobDone"); !out.Reported || out.Err == nil || !out.Retryable {
		t.Errorf("JobDone got %+v, want a reported retryable failure", out)
	}
}

// TestShutdownIdle: with no job, Shutdown ends the session at once; before
// Run, it makes Run return at once.
func TestShutdownIdle(t *testing.T) {
	st := newTestStudio(t)
	w := startWorker(t, st, nil)
	sc := st.accept(t)
	sc.welcome(t)
	if err := w.c.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown = %v", err)
	}
	if err := w.result(t); err != nil {
		t.Errorf("Run = %v", err)
	}
	if err := w.c.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown = %v", err)
	}

	c, err := New(testConfig(st, newRunner(), &syncBuffer{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown before Run = %v", err)
	}
	if err := c.Run(context.Background()); err != nil {
		t.Errorf("Run after Shutdown = %v", err)
	}
}
