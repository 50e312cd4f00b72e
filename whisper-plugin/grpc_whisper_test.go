//go:build whispercpp

package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/plugins/plugintest"
	"github.com/stokerhq/stoker/whisper-plugin/wav"
)

func checkTranscript(t *testing.T, r *plugintest.Recorder, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	res := (&recorder{result: r.JSON()}).decode(t)
	if res.Text == "" || res.Segments < 1 || res.Duration != 5 {
		t.Errorf("result %+v, want a transcript of 5 s", res)
	}
}

// TestConformanceWhisper runs the conformance kit with real jobs over
// in-process gRPC, then cancellation mid-run and the ModelManager calls.
func TestConformanceWhisper(t *testing.T) {
	f := newFixture(t)
	e := testEngine(t)
	host := plugintest.Connect(t, e)
	plugintest.Conformance(t, host,
		plugintest.Case{Name: "transcribe", Req: *sttRequest(f.model, f.clip, plugins.STTTask{}), Check: checkTranscript},
		plugintest.Case{Name: "transcribe again", Req: *sttRequest(f.model, f.clip, plugins.STTTask{Timestamps: "segment"}), Check: checkTranscript},
	)
	if got := e.models.Loads(); got != 1 {
		t.Errorf("loads: got %d, want 1", got)
	}
	long := writeWAV(t, f.dir, "long.wav", wav.Format{Encoding: wav.PCM, Channels: 1, SampleRate: 16000, BitsPerSample: 16}, speechish(95, 16000, 3))
	err := plugintest.ExpectCancel(t, host, sttRequest(f.model, long, plugins.STTTask{}))
	if je := plugins.AsJobError(err); je == nil || je.Kind != plugins.ErrCancelled {
		t.Errorf("cancelled run: %v, want %s", err, plugins.ErrCancelled)
	}
	mm, ok := host.(plugins.ModelManager)
	if !ok {
		t.Fatalf("host %T is not a ModelManager", host)
	}
	if res, err := mm.Resident(context.Background()); err != nil || len(res) != 1 {
		t.Errorf("Resident = %+v, %v; want one model", res, err)
	}
	if err := mm.Unload(context.Background(), "tiny-whisper"); err != nil {
		t.Fatal(err)
	}
	if res, _ := mm.Resident(context.Background()); len(res) != 0 {
		t.Errorf("Resident after Unload = %+v, want none", res)
	}
}

// TestPluginBinary builds the plugin and launches it the way the supervisor
// does: a real process speaking go-plugin over AutoMTLS.
func TestPluginBinary(t *testing.T) {
	f := newFixture(t)
	bin := filepath.Join(f.dir, "whisper-plugin")
	build := exec.Command("go", "build", "-tags", "whispercpp", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	p := plugintest.Launch(t, bin)
	d, err := p.Describe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !d.Ready || d.Device.Backend == "" || d.Engines[0] != EngineID {
		t.Fatalf("Describe = %+v, want ready whisper-cpp with a device", d)
	}
	bad := sttRequest(f.model, f.model, plugins.STTTask{}) // the model is not a WAV
	if _, err := plugintest.Run(context.Background(), p, bad); plugins.AsJobError(err).Kind != plugins.ErrBadInput {
		t.Errorf("bad audio through the process: %v, want %s", err, plugins.ErrBadInput)
	}
	for range 2 {
		rec, err := plugintest.Run(context.Background(), p, sttRequest(f.model, f.clip, plugins.STTTask{}))
		checkTranscript(t, rec, err)
	}
	res, err := p.Resident(context.Background())
	if err != nil || len(res) != 1 {
		t.Errorf("Resident = %+v, %v; want one model", res, err)
	}
}
