package stresscrash

import (
	"bytes"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stokerhq/stoker/supervisor/internal/devstudio"
)

func TestAttempts(t *testing.T) {
	t0 := time.Unix(0, 0)
	tests := []struct {
		name                       string
		frames                     []devstudio.Point
		attempts, lost, duplicates int
	}{
		{"complete", []devstudio.Point{devstudio.PointAccept, devstudio.PointCompleteJSON}, 1, 0, 0},
		{"retried then done", []devstudio.Point{devstudio.PointAccept, devstudio.PointFail, devstudio.PointAccept, devstudio.PointUploadStart}, 2, 0, 0},
		{"lost attempt", []devstudio.Point{devstudio.PointAccept, devstudio.PointAccept, devstudio.PointFail}, 2, 1, 0},
		{"never answered", []devstudio.Point{devstudio.PointAccept}, 1, 1, 0},
		{"duplicate", []devstudio.Point{devstudio.PointAccept, devstudio.PointFail, devstudio.PointCompleteJSON}, 1, 0, 1},
		{"outcome without accept", []devstudio.Point{devstudio.PointFail}, 0, 0, 1},
		{"refused after two crashes", []devstudio.Point{devstudio.PointAccept, devstudio.PointFail, devstudio.PointAccept, devstudio.PointFail, devstudio.PointReject}, 2, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f Frames
			for i, p := range tt.frames {
				f.Add("job", p, t0.Add(time.Duration(i)))
			}
			a, l, d := f.Attempts()
			if a != tt.attempts || l != tt.lost || d != tt.duplicates {
				t.Errorf("got attempts=%d lost=%d duplicates=%d, want %d %d %d", a, l, d, tt.attempts, tt.lost, tt.duplicates)
			}
		})
	}
}

func TestFailMessagesFromTheNextAccept(t *testing.T) {
	views := map[string]devstudio.JobView{"j": {ID: "j", Error: "crashed: first"}}
	f := Frames{Job: func(id string) (devstudio.JobView, bool) { v, ok := views[id]; return v, ok }}
	f.Hook("w", devstudio.PointAccept, "j")
	f.Hook("w", devstudio.PointFail, "j")
	f.Hook("w", devstudio.PointAccept, "j") // the studio holds the first fail's message now
	f.Hook("w", devstudio.PointFail, "j")
	views["j"] = devstudio.JobView{ID: "j", Error: "poison: second"}
	f.Hook("w", devstudio.PointReject, "j") // the refusal's reason replaces it in the studio
	f.Finish([]devstudio.JobView{{ID: "j", Error: "rejected by w: refused here"}})
	got := map[string]bool{}
	for _, fl := range f.Fails() {
		got[fl.Message] = true
	}
	if !got["crashed: first"] || !got["poison: second"] || len(got) != 2 {
		t.Errorf("fail messages %v, want the first and the second", got)
	}
}

func TestTallyAndPrint(t *testing.T) {
	crash := time.Unix(100, 0)
	var f Frames
	f.Add("a", devstudio.PointAccept, crash.Add(-time.Millisecond))
	f.Add("a", devstudio.PointFail, crash.Add(12*time.Millisecond))
	f.Finish([]devstudio.JobView{{ID: "a", Error: "poison: x; last stderr: faults: injecting sigkill pid=7 at=" + itoa(crash.UnixNano())}})
	var log AgentLog
	log.Line([]byte(`{"@message":"plugin died","plugin":"faults-plugin"}`))
	log.Line([]byte(`{"@message":"plugin serving","@timestamp":"` + crash.Add(80*time.Millisecond).UTC().Format(time.RFC3339Nano) + `","plugin":"faults-plugin"}`))
	log.Line([]byte(`not json`))
	rep := &Report{Jobs: 2}
	tally(rep, []devstudio.JobView{
		{ID: "a", Status: devstudio.JobFailed, Retryable: true, Error: "rejected by w-1: job \"a\" brought down 2 faults-plugin instances on this node"},
		{ID: "b", Status: devstudio.JobCompleted},
	}, &f, &log)
	if rep.Completed != 1 || rep.Poison != 1 || rep.FailedRetryable != 1 || rep.PluginRestarts != 1 || rep.Lost != 0 || rep.Duplicates != 0 {
		t.Errorf("report %+v", rep)
	}
	if len(rep.FailLatency) != 1 || rep.FailLatency[0] != 12*time.Millisecond || len(rep.ServeLatency) != 1 || rep.ServeLatency[0] != 80*time.Millisecond {
		t.Errorf("latencies fail %v serve %v, want [12ms] [80ms]", rep.FailLatency, rep.ServeLatency)
	}
	if len(rep.RelaunchServe) != 1 || len(rep.SpareServe) != 0 {
		t.Errorf("by a relaunch %v, by a spare %v; want the one serve by a relaunch", rep.RelaunchServe, rep.SpareServe)
	}
	// The same crash, served again by a spare swapped in.
	var spareLog AgentLog
	spareLog.Line([]byte(`{"@message":"spare swapped in","plugin":"faults-plugin"}`))
	spareLog.Line([]byte(`{"@message":"plugin serving","@timestamp":"` + crash.Add(time.Millisecond).UTC().Format(time.RFC3339Nano) + `","plugin":"faults-plugin"}`))
	spareRep := &Report{Jobs: 2}
	tally(spareRep, []devstudio.JobView{{ID: "b", Status: devstudio.JobCompleted}}, &f, &spareLog)
	if len(spareRep.SpareServe) != 1 || spareRep.SpareServe[0] != time.Millisecond || len(spareRep.RelaunchServe) != 0 {
		t.Errorf("by a spare %v, by a relaunch %v; want [1ms] by a spare", spareRep.SpareServe, spareRep.RelaunchServe)
	}
	var out bytes.Buffer
	rep.Print(&out)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if got, want := lines[len(lines)-1], "lost=0 duplicates=0 supervisor_crashes=0 jobs=2"; got != want {
		t.Errorf("last line %q, want %q", got, want)
	}
}

func TestJobMixRate(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	injected := 0
	for i := range 1000 {
		model, _ := jobFor(i, rng, 0.2, true, &injected)
		if model == "" {
			t.Fatal("no model")
		}
	}
	if injected < 150 || injected > 250 {
		t.Errorf("%d faults in 1000 jobs at rate 0.2", injected)
	}
}

func TestPercentile(t *testing.T) {
	ds := []time.Duration{5, 1, 3, 2, 4}
	if got := Percentile(ds, 50); got != 3 {
		t.Errorf("p50 = %v, want 3", got)
	}
	if got := Percentile(nil, 99); got != 0 {
		t.Errorf("p99 of nothing = %v", got)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
