package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/whisper-plugin/ggmlmodel"
	"github.com/stokerhq/stoker/whisper-plugin/wav"
)

// recorder is an Events that records what a job reports.
type recorder struct {
	mu       sync.Mutex
	progress []uint64
	logs     []string
	result   []byte
	// failProgress, when set, is returned by Progress (a receiver gone).
	failProgress error
	// onProgress, when set, runs on every progress event.
	onProgress func(step uint64)
}

func (r *recorder) Progress(step, total uint64, unit string) error {
	r.mu.Lock()
	r.progress = append(r.progress, step)
	f, err := r.onProgress, r.failProgress
	r.mu.Unlock()
	if f != nil {
		f(step)
	}
	return err
}

func (r *recorder) Log(level, msg string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.logs = append(r.logs, level+": "+msg)
	return nil
}

func (r *recorder) Output(ext string, p []byte) error {
	return errors.New("whisper jobs have no binary output")
}

func (r *recorder) Result(b []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.result != nil {
		return errors.New("result set twice")
	}
	r.result = slices.Clone(b)
	return nil
}

func (r *recorder) decode(t testing.TB) sttResult {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.result == nil {
		t.Fatal("job set no result")
	}
	var res sttResult
	dec := json.NewDecoder(bytes.NewReader(r.result))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&res); err != nil {
		t.Fatalf("result %s: %v", r.result, err)
	}
	return res
}

func testLogger() hclog.Logger { return hclog.NewNullLogger() }

func testEngine(t testing.TB) *engine {
	t.Helper()
	e := newEngine(testLogger(), options{Threads: 2})
	t.Cleanup(e.Close)
	return e
}

// writeModel writes the tiny-whisper model into dir once per test binary.
func writeModel(t testing.TB, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "tiny-whisper.bin")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := ggmlmodel.WriteTinyWhisper(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// writeWAV writes samples (interleaved, in [-1, 1]) as a WAV file.
func writeWAV(t testing.TB, dir, name string, f wav.Format, samples []float64) string {
	t.Helper()
	var b bytes.Buffer
	if err := wav.Encode(&b, f, samples); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// speechish synthesises seconds of audio at rate with a voice-like
// structure: a 140 Hz buzz with harmonics, amplitude-modulated into
// syllables, with pauses, over faint noise. Deterministic for a seed.
func speechish(seconds float64, rate int, seed uint64) []float64 {
	rng := rand.New(rand.NewPCG(seed, 7))
	n := int(seconds * float64(rate))
	out := make([]float64, n)
	for i := range out {
		tt := float64(i) / float64(rate)
		syll := 0.5 + 0.5*math.Sin(2*math.Pi*3.5*tt)
		if math.Mod(tt, 2.0) > 1.6 { // a pause every two seconds
			syll = 0
		}
		f0 := 140 + 20*math.Sin(2*math.Pi*0.7*tt)
		var v float64
		for h := 1; h <= 6; h++ {
			v += math.Sin(2*math.Pi*f0*float64(h)*tt) / float64(h)
		}
		out[i] = 0.25*syll*v + 0.003*rng.NormFloat64()
	}
	return out
}

func sttRequest(model, audio string, task plugins.STTTask) *plugins.RunRequest {
	return &plugins.RunRequest{
		JobID:  "job-1",
		Model:  "tiny-whisper",
		Engine: EngineID,
		Task:   plugins.Task{Kind: plugins.KindSTT, STT: &task},
		Files:  []plugins.ModelFile{{Role: "model", Path: model}},
		Inputs: plugins.Inputs{Audio: audio},
	}
}

func jobErrorKind(err error) plugins.ErrorKind {
	var je *plugins.JobError
	if errors.As(err, &je) {
		return je.Kind
	}
	return ""
}

func TestDescribe(t *testing.T) {
	e := testEngine(t)
	d, err := e.Describe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := d.Engines, []string{"whisper-cpp"}; !slices.Equal(got, want) {
		t.Errorf("engines: got %v, want %v", got, want)
	}
	if got, want := d.Kinds, []plugins.TaskKind{plugins.KindSTT}; !slices.Equal(got, want) {
		t.Errorf("kinds: got %v, want %v", got, want)
	}
	if got, want := d.Models[plugins.KindSTT], []string{"whisper-cpp:*"}; !slices.Equal(got, want) {
		t.Errorf("models: got %v, want %v", got, want)
	}
	if d.ContractVersion != plugins.ContractVersion {
		t.Errorf("contract: got %d, want %d", d.ContractVersion, plugins.ContractVersion)
	}
	if d.Device.Backend == "" {
		t.Error("device backend is empty")
	}
	ready, reason := engineStatus()
	if d.Ready != ready || d.NotReadyReason != reason {
		t.Errorf("ready: got %v %q, want %v %q", d.Ready, d.NotReadyReason, ready, reason)
	}
}

func TestUnsupportedKinds(t *testing.T) {
	e := testEngine(t)
	for _, k := range []plugins.TaskKind{plugins.KindImage, plugins.KindLLM, plugins.KindTTS, plugins.KindVideo} {
		t.Run(string(k), func(t *testing.T) {
			req := &plugins.RunRequest{Model: "m", Task: plugins.Task{Kind: k}}
			err := e.Run(context.Background(), req, &recorder{})
			if got := jobErrorKind(err); got != plugins.ErrUnsupported {
				t.Fatalf("got %v (%v), want %s", got, err, plugins.ErrUnsupported)
			}
			if je := plugins.AsJobError(err); je.Retryable() {
				t.Error("unsupported kind is retryable, want terminal")
			}
		})
	}
}

// TestBadRequests covers failures found before the engine runs; they are
// the same with and without whisper.cpp built in.
func TestBadRequests(t *testing.T) {
	dir := t.TempDir()
	good := writeWAV(t, dir, "good.wav", wav.Format{Encoding: wav.PCM, Channels: 1, SampleRate: 16000, BitsPerSample: 16}, speechish(1, 16000, 1))
	model := filepath.Join(dir, "model.bin") // never read: the requests fail first
	hdr, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"empty.wav":      nil,
		"truncated.wav":  hdr[:30],
		"magic.wav":      append([]byte("RIFX"), hdr[4:]...),
		"text.wav":       []byte("this is not audio, it is a text file pretending\n"),
		"huge-claim.wav": append(append([]byte{}, hdr[:40]...), 0xff, 0xff, 0xff, 0x7f, 1, 2, 3, 4),
		"no-samples.wav": append(append([]byte{}, hdr[:40]...), 0, 0, 0, 0),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		req  *plugins.RunRequest
	}{
		{"bad timestamps", sttRequest(model, good, plugins.STTTask{Timestamps: "phoneme"})},
		{"no model file", func() *plugins.RunRequest { r := sttRequest(model, good, plugins.STTTask{}); r.Files = nil; return r }()},
		{"no audio", sttRequest(model, "", plugins.STTTask{})},
		{"nil params", &plugins.RunRequest{Model: "m", Task: plugins.Task{Kind: plugins.KindSTT}}},
	}
	for name := range files {
		tests = append(tests, struct {
			name string
			req  *plugins.RunRequest
		}{name, sttRequest(model, filepath.Join(dir, name), plugins.STTTask{})})
	}
	e := testEngine(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := &recorder{}
			err := e.Run(context.Background(), tt.req, ev)
			want := plugins.ErrBadInput
			if tt.name == "nil params" {
				want = plugins.ErrUnsupported
			}
			if got := jobErrorKind(err); got != want {
				t.Fatalf("got %q (%v), want %s", got, err, want)
			}
			if ev.result != nil {
				t.Errorf("failed job set a result: %s", ev.result)
			}
		})
	}
	if n := e.models.Loads(); n != 0 {
		t.Errorf("bad requests loaded %d models, want 0", n)
	}
}

func TestMissingAudioFile(t *testing.T) {
	e := testEngine(t)
	err := e.Run(context.Background(), sttRequest("m.bin", filepath.Join(t.TempDir(), "gone.wav"), plugins.STTTask{}), &recorder{})
	// An input the supervisor said it fetched but is not there is this
	// node's problem, not the task's: retryable.
	if got := jobErrorKind(err); got != plugins.ErrEngine {
		t.Fatalf("got %q (%v), want %s", got, err, plugins.ErrEngine)
	}
}

func TestBuildResult(t *testing.T) {
	tr := &transcript{Language: "de", Segments: []segment{
		{T0: 0, T1: 150, Text: " the bridge"},
		{T0: 150, T1: 342, Text: " is out past the mill "},
	}}
	tests := []struct {
		name      string
		lang      string
		withTimes bool
		want      string
	}{
		{"plain", "en", false, `{"text":"the bridge is out past the mill","language":"en","duration":3.42,"segments":2}`},
		{"auto reports detected", "auto", false, `{"text":"the bridge is out past the mill","language":"de","duration":3.42,"segments":2}`},
		{"timestamps", "en", true, `{"text":"the bridge is out past the mill","language":"en","duration":3.42,"segments":2,` +
			`"segmentList":[{"start":0,"end":1.5,"text":"the bridge"},{"start":1.5,"end":3.42,"text":"is out past the mill"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(buildResult(tr, tt.lang, 3.4204, tt.withTimes))
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Errorf("got  %s\nwant %s", b, tt.want)
			}
		})
	}
	b, _ := json.Marshal(buildResult(&transcript{}, "en", 1, true))
	if want := `{"text":"","language":"en","duration":1,"segments":0,"segmentList":[]}`; string(b) != want {
		t.Errorf("empty: got %s, want %s", b, want)
	}
}
