//go:build whispercpp

package main

import (
	"context"
	"math"
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
	p := launchPlugin(t, f.dir)
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

// launchPlugin builds the plugin into dir and launches it the way the
// supervisor does.
func launchPlugin(t *testing.T, dir string) *plugins.Plugin {
	t.Helper()
	bin := filepath.Join(dir, "whisper-plugin")
	build := exec.Command("go", "build", "-tags", "whispercpp", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return plugintest.Launch(t, bin)
}

// TestTranscriptFollowsTheAudio: tiny-whisper's transcript depends on the
// audio, so a test of the audio path can fail. Five seconds of silence, of
// a 440 Hz tone and of speech (espeak-ng's, at its own 22.05 kHz, which the
// plugin resamples) give three different transcripts through the plugin
// process, each with at least one segment.
func TestTranscriptFollowsTheAudio(t *testing.T) {
	f := newFixture(t)
	pcm16 := wav.Format{Encoding: wav.PCM, Channels: 1, SampleRate: 16000, BitsPerSample: 16}
	tone := make([]float64, 5*16000)
	for i := range tone {
		tone[i] = 0.5 * math.Sin(2*math.Pi*440*float64(i)/16000)
	}
	espeak, err := exec.LookPath("espeak-ng")
	if err != nil {
		t.Fatalf("espeak-ng not found (scripts/install-engines.sh installs it): %v", err)
	}
	speech := filepath.Join(f.dir, "speech.wav")
	if out, err := exec.Command(espeak, "-w", speech, "The bridge is out past the old mill, take the north road.").CombinedOutput(); err != nil {
		t.Fatalf("espeak-ng: %v\n%s", err, out)
	}
	clips := []struct{ name, path string }{
		{"silence", writeWAV(t, f.dir, "silence.wav", pcm16, make([]float64, 5*16000))},
		{"440 Hz tone", writeWAV(t, f.dir, "tone.wav", pcm16, tone)},
		{"speech", speech},
	}
	p := launchPlugin(t, f.dir)
	seen := map[string]string{} // transcript -> clip
	for _, c := range clips {
		rec, err := plugintest.Run(context.Background(), p, sttRequest(f.model, c.path, plugins.STTTask{}))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		res := (&recorder{result: rec.JSON()}).decode(t)
		t.Logf("%s: %q", c.name, res.Text)
		if res.Text == "" || res.Segments < 1 {
			t.Errorf("%s: result %+v, want a transcript", c.name, res)
		}
		if other, ok := seen[res.Text]; ok {
			t.Errorf("%s and %s give the same transcript %q: the model does not hear the audio", other, c.name, res.Text)
		}
		seen[res.Text] = c.name
	}
}
