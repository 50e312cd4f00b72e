package plugins_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/plugins/plugintest"
)

// progressFlood is how many progress reports the "progress-flood" job
// makes.
const progressFlood = 100000

// A launched plugin carries every job on its one Jobs stream, numbered in
// order, one after another.
func TestJobsShareOneStream(t *testing.T) {
	p := launch(t, nil)
	for want := uint64(1); want <= 3; want++ {
		rec, err := plugintest.Run(context.Background(), p, llm("wire-job"))
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Job  uint64
			Jobs bool
		}
		if err := json.Unmarshal(rec.JSON(), &got); err != nil {
			t.Fatal(err)
		}
		if !got.Jobs || got.Job != want {
			t.Errorf("job %d ran as %+v, want job %d of the Jobs stream", want, got, want)
		}
	}
}

// Jobs at once on the stream: one hangs while the next is served, and a
// cancel ends the hanging one only.
func TestJobsAtOnceOnTheStream(t *testing.T) {
	p := launch(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	ev := &startedEvents{started: make(chan struct{})}
	hung := make(chan error, 1)
	go func() { hung <- p.Run(ctx, llm("hang"), ev) }()
	<-ev.started
	rec, err := plugintest.Run(context.Background(), p, llm("beside"))
	if err != nil || string(rec.JSON()) != `{"echo":"beside"}` {
		t.Fatalf("job beside a hanging one: %s, %v", rec.JSON(), err)
	}
	cancel()
	if je := plugins.AsJobError(<-hung); je == nil || je.Kind != plugins.ErrCancelled {
		t.Fatalf("hanging job: got %v, want %s", je, plugins.ErrCancelled)
	}
	if _, err := plugintest.Run(context.Background(), p, llm("after")); err != nil {
		t.Errorf("after the cancel: %v", err)
	}
}

// Progress is latest wins: an engine reporting far faster than the host
// takes reports never waits for it, and the host gets the newest value
// before the outcome.
func TestProgressNeverWaitsForTheHost(t *testing.T) {
	p := launch(t, nil)
	ev := &gatedProgress{gate: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- p.Run(context.Background(), llm("progress-flood"), ev) }()
	<-ev.entered() // the host is stuck in its first Progress
	close(ev.gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	steps := ev.steps()
	if n := len(steps); n == 0 || n > 100 {
		t.Fatalf("host got %d progress events for %d reports, want a few", n, progressFlood)
	}
	if last := steps[len(steps)-1]; last != progressFlood {
		t.Errorf("last progress %d, want the newest, %d", last, progressFlood)
	}
	if string(ev.JSON()) != `{"flooded":true}` {
		t.Errorf("result %s", ev.JSON())
	}
}

// gatedProgress blocks its first Progress until gate is closed: a host
// that does not read.
type gatedProgress struct {
	plugintest.Recorder
	gate chan struct{}

	mu    sync.Mutex
	in    chan struct{}
	got   []uint64
	first bool
}

func (g *gatedProgress) entered() chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.in == nil {
		g.in = make(chan struct{})
	}
	return g.in
}

func (g *gatedProgress) Progress(step, total uint64, unit string) error {
	in := g.entered()
	g.mu.Lock()
	g.got = append(g.got, step)
	first := !g.first
	g.first = true
	g.mu.Unlock()
	if first {
		close(in)
		<-g.gate
	}
	return nil
}

func (g *gatedProgress) steps() []uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]uint64(nil), g.got...)
}

// In process (plugintest.Connect) the same engine serves on the Jobs stream
// as well.
func TestInProcessJobs(t *testing.T) {
	e := plugintest.Connect(t, &testEngine{log: hclog.NewNullLogger()})
	rec, err := plugintest.Run(context.Background(), e, llm("wire-job"))
	if err != nil {
		t.Fatal(err)
	}
	if string(rec.JSON()) != `{"job":1,"jobs":true}` {
		t.Errorf("got %s, want job 1 of the Jobs stream", rec.JSON())
	}
}
