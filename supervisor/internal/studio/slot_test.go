package studio

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stokerhq/stoker/supervisor/internal/jobslot"
	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

// studioSlot is the node's slot as the session takes it.
type studioSlot struct{ s *jobslot.Slot }

func (s studioSlot) TryAcquire() bool { return s.s.TryAcquire(jobslot.Studio) }
func (s studioSlot) Release()         { s.s.Release() }

// TestSharedSlot: an offer while another source (the local API) holds the
// node's slot is rejected busy without reaching Admit; once it is free an
// offer is accepted, holds the node's slot while it runs and releases it
// when reported.
func TestSharedSlot(t *testing.T) {
	st := newTestStudio(t)
	node := jobslot.New(1)
	release := make(chan struct{})
	w := startWorker(t, st, func(c *Config) { c.Slot = studioSlot{node} })
	w.runner.run = func(ctx context.Context, c *protocol.JobOfferClaim, rep Reporter) {
		<-release
		if err := rep.CompleteJSON(ctx, json.RawMessage(`{"object":"chat.completion"}`), c.Task.Prompt()); err != nil {
			t.Errorf("CompleteJSON: %v", err)
		}
	}
	sc := st.accept(t)
	sc.welcome(t)

	if err := node.Acquire(context.Background(), jobslot.Local); err != nil {
		t.Fatal(err)
	}
	sc.send(t, offer("job-1"))
	rej := nextOf[protocol.Reject](t, sc)
	if want := (protocol.Reject{JobID: "job-1", Reason: protocol.ReasonBusy, Code: protocol.RejectBusy}); rej != want {
		t.Errorf("reject = %+v, want %+v", rej, want)
	}
	if n := w.runner.admits.Load(); n != 0 {
		t.Errorf("Admit called %d times while the node's slot was held", n)
	}
	node.Release()

	sc.send(t, offer("job-2"))
	if a := nextOf[protocol.Accept](t, sc); a.JobID != "job-2" {
		t.Fatalf("accept for %q, want job-2", a.JobID)
	}
	waitFor(t, w.runner.started, "RunJob")
	if h := node.State().Holder; h != jobslot.Studio {
		t.Errorf("node slot holder while the studio job runs: got %q, want %q", h, jobslot.Studio)
	}
	close(release)
	nextOf[protocol.CompleteJSON](t, sc)
	waitFor(t, w.runner.ended, "RunJob return")
	eventually(t, "the node's slot free", func() bool { return node.State().Holder == "" })
}
