package main

import (
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/plugins/plugintest"
)

// TestObserverPhases feeds the callbacks what stable-diffusion.cpp sends
// during a generation and checks the job's events.
func TestObserverPhases(t *testing.T) {
	rec := &plugintest.Recorder{}
	o := newObserver(hclog.NewNullLogger(), rec)
	o.begin(phaseSample)
	engineLog(sdLogInfo, "stable-diffusion.cpp:4356 - sampling using Euler A method\n")
	engineProgress(0, 2)
	engineProgress(1, 2)
	engineProgress(2, 2)
	engineLog(sdLogInfo, "stable-diffusion.cpp:5297 - decoding 1 latents\n")
	engineProgress(1, 4) // a tile of a tiled decode
	engineLog(sdLogWarn, "stable-diffusion.cpp:100 - something odd\n")
	engineLog(sdLogInfo, "stable-diffusion.cpp:5367 - decode_first_stage completed, taking 0.53s\n")
	o.end()
	engineProgress(2, 2) // after end: nobody listens

	want := []plugintest.Progress{{Step: 0, Total: 2, Unit: "step"}, {Step: 1, Total: 2, Unit: "step"}, {Step: 2, Total: 2, Unit: "step"},
		{Step: 0, Total: 1, Unit: "decode"}, {Step: 1, Total: 4, Unit: "decode"}, {Step: 1, Total: 1, Unit: "decode"}}
	if got := rec.Events(); !reflect.DeepEqual(got, want) {
		t.Errorf("events = %v\nwant     %v", got, want)
	}
	if logs := strings.Join(rec.Logs(), "\n"); !strings.Contains(logs, "stable-diffusion.cpp: something odd") {
		t.Errorf("warning not shipped to the job's log: %q", logs)
	}
	if s, d := o.split(time.Now()); s <= 0 || d <= 0 {
		t.Errorf("split = %v sampling, %v decode; want both measured", s, d)
	}
}

func TestObserverFailureNamesTheLastError(t *testing.T) {
	o := newObserver(hclog.NewNullLogger(), nil)
	o.begin(phaseLoad)
	engineLog(sdLogError, "model_loader.cpp:12 - tensor 'x' has wrong shape\n")
	engineLog(sdLogError, "stable-diffusion.cpp:99 - load tensors from model loader failed\n")
	o.end()
	err := o.failure("load the model")
	expectKind(t, err, plugins.ErrEngine, "could not load the model: load tensors from model loader failed")

	o.begin(phaseLoad)
	o.end()
	expectKind(t, o.failure("load the model"), plugins.ErrEngine, "no reason given")
}

// refusingEvents fails every event, as the host does once a job is gone.
type refusingEvents struct{ *plugintest.Recorder }

func (refusingEvents) Progress(step, total uint64, unit string) error { return errors.New("host gone") }

func TestObserverStopsTheEngineWhenTheHostIsGone(t *testing.T) {
	o := newObserver(hclog.NewNullLogger(), refusingEvents{&plugintest.Recorder{}})
	var cancels int
	var mu sync.Mutex
	o.cancel = func() { mu.Lock(); cancels++; mu.Unlock() }
	o.begin(phaseSample)
	engineProgress(1, 10)
	engineProgress(2, 10)
	o.end()
	if cancels != 1 {
		t.Errorf("engine asked to stop %d times, want once", cancels)
	}
	expectKind(t, o.stopped(), plugins.ErrCancelled, "host gone")
}

// TestObserverRepeatsACancelAtEachStep: the engine drops a cancellation
// asked for just before a generation starts, so once the job is cancelled
// every step asks again.
func TestObserverRepeatsACancelAtEachStep(t *testing.T) {
	o := newObserver(hclog.NewNullLogger(), &plugintest.Recorder{})
	var cancels int
	done := make(chan struct{})
	o.cancel, o.done = func() { cancels++ }, done
	o.begin(phaseSample)
	engineProgress(0, 4)
	if cancels != 0 {
		t.Fatalf("asked the engine to stop %d times before the job was cancelled", cancels)
	}
	close(done)
	engineProgress(1, 4)
	engineProgress(2, 4)
	o.end()
	if cancels != 2 {
		t.Errorf("asked the engine to stop %d times in two steps after the cancel, want 2", cancels)
	}
}
