//go:build whispercpp

package main

// These tests run whisper.cpp for real (tiny random-weight model, synthetic
// audio) and compare the plugin with whisper-cli built from the same source
// by scripts/engines/whisper.sh. Built with the whispercpp tag they never
// skip: a missing whisper-cli is a failure.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/whisper-plugin/wav"
)

// whisperCLI finds whisper-cli: $STOKER_WHISPER_CLI, the `cli` variable of
// whisper.pc, or whisper-cli on PATH.
func whisperCLI(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("STOKER_WHISPER_CLI"); p != "" {
		return p
	}
	if out, err := exec.Command("pkg-config", "--variable=cli", "whisper").Output(); err == nil {
		if p := strings.TrimSpace(string(out)); p != "" {
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}
	p, err := exec.LookPath("whisper-cli")
	if err != nil {
		t.Fatalf("whisper-cli not found (run scripts/install-engines.sh, or set STOKER_WHISPER_CLI): %v", err)
	}
	return p
}

// fixture is the model and a clip shared by the tests of one package run.
type fixture struct {
	dir   string
	model string
	clip  string // 16 kHz mono 16-bit: decoded identically by miniaudio and wav
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{dir: dir, model: writeModel(t, dir)}
	f.clip = writeWAV(t, dir, "clip.wav", wav.Format{Encoding: wav.PCM, Channels: 1, SampleRate: 16000, BitsPerSample: 16}, speechish(5, 16000, 1))
	return f
}

// cliSegment is one entry of whisper-cli's -oj output.
type cliSegment struct {
	Offsets struct {
		From int64 `json:"from"`
		To   int64 `json:"to"`
	} `json:"offsets"`
	Text string `json:"text"`
}

type cliOutput struct {
	Result struct {
		Language string `json:"language"`
	} `json:"result"`
	Transcription []cliSegment `json:"transcription"`
}

// runCLI transcribes audio with whisper-cli and the given extra flags.
func runCLI(t testing.TB, cli, model, audio string, threads int, args ...string) (*cliOutput, time.Duration) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out")
	argv := append([]string{"-m", model, "-f", audio, "-t", strconv.Itoa(threads), "-oj", "-of", out, "-np"}, args...)
	cmd := exec.Command(cli, argv...)
	start := time.Now()
	b, err := cmd.CombinedOutput()
	wall := time.Since(start)
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", cli, argv, err, b)
	}
	js, err := os.ReadFile(out + ".json")
	if err != nil {
		t.Fatalf("whisper-cli wrote no JSON: %v\n%s", err, b)
	}
	var o cliOutput
	if err := json.Unmarshal(js, &o); err != nil {
		t.Fatalf("whisper-cli JSON: %v\n%s", err, js)
	}
	return &o, wall
}

func TestParityWithWhisperCLI(t *testing.T) {
	cli := whisperCLI(t)
	f := newFixture(t)
	e := testEngine(t) // 2 threads
	tests := []struct {
		name string
		task plugins.STTTask
		args []string
	}{
		{"segments", plugins.STTTask{Timestamps: "segment"}, []string{"-l", "en"}},
		{"words", plugins.STTTask{Timestamps: "word"}, []string{"-l", "en", "-ml", "1", "-sow"}},
		{"dutch translated", plugins.STTTask{Language: "nl", Translate: true, Timestamps: "segment"}, []string{"-l", "nl", "-tr"}},
		{"prompt", plugins.STTTask{Prompt: "the bridge is out past the mill", Timestamps: "segment"}, []string{"-l", "en", "--prompt", "the bridge is out past the mill"}},
		{"auto language", plugins.STTTask{Language: "auto", Timestamps: "segment"}, []string{"-l", "auto"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := &recorder{}
			if err := e.Run(context.Background(), sttRequest(f.model, f.clip, tt.task), ev); err != nil {
				t.Fatalf("Run: %v", err)
			}
			got := ev.decode(t)
			want, _ := runCLI(t, cli, f.model, f.clip, 2, tt.args...)
			if len(want.Transcription) == 0 {
				t.Fatal("whisper-cli produced no segments; the test model should always babble")
			}
			var wantText strings.Builder
			for _, s := range want.Transcription {
				wantText.WriteString(s.Text)
			}
			if g, w := got.Text, strings.TrimSpace(wantText.String()); g != w {
				t.Errorf("text:\n got  %q\n want %q", g, w)
			}
			if g, w := got.Segments, len(want.Transcription); g != w {
				t.Errorf("segments: got %d, want %d", g, w)
			}
			if len(got.SegmentList) != len(want.Transcription) {
				t.Fatalf("segmentList: got %d entries, want %d", len(got.SegmentList), len(want.Transcription))
			}
			for i, w := range want.Transcription {
				g := got.SegmentList[i]
				gf, gt := int64(math.Round(g.Start*1000)), int64(math.Round(g.End*1000))
				if gf != w.Offsets.From || gt != w.Offsets.To || g.Text != strings.TrimSpace(w.Text) {
					t.Errorf("segment %d: got [%d ms, %d ms] %q, want [%d ms, %d ms] %q",
						i, gf, gt, g.Text, w.Offsets.From, w.Offsets.To, strings.TrimSpace(w.Text))
				}
			}
			wantLang := tt.task.Language
			if wantLang == "" {
				wantLang = "en"
			}
			if wantLang == "auto" {
				wantLang = want.Result.Language
			}
			if got.Language != wantLang {
				t.Errorf("language: got %q, want %q", got.Language, wantLang)
			}
			if got.Duration != 5 {
				t.Errorf("duration: got %v, want 5", got.Duration)
			}
		})
	}
}

// TestNoTimestampsShape checks the plain spec §7.2 shape: no segmentList.
func TestNoTimestampsShape(t *testing.T) {
	f := newFixture(t)
	e := testEngine(t)
	ev := &recorder{}
	if err := e.Run(context.Background(), sttRequest(f.model, f.clip, plugins.STTTask{}), ev); err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(ev.result, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"text", "language", "duration", "segments"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("result lacks %q: %s", k, ev.result)
		}
	}
	if _, ok := raw["segmentList"]; ok {
		t.Errorf("result has segmentList without timestamps asked: %s", ev.result)
	}
	if n, ok := raw["segments"].(float64); !ok || n < 1 || n != math.Trunc(n) {
		t.Errorf("segments: got %v, want a positive integer count", raw["segments"])
	}
	if len(ev.progress) == 0 || ev.progress[len(ev.progress)-1] != 100 {
		t.Errorf("progress: got %v, want events ending at 100", ev.progress)
	}
}

// TestEncodingsAndRates runs every WAV encoding, odd rates and channel
// counts through the engine: each must transcribe, and the 16 kHz mono
// variants of the same signal must give the same transcript as 16-bit.
func TestEncodingsAndRates(t *testing.T) {
	f := newFixture(t)
	e := testEngine(t)
	tests := []wav.Format{
		{Encoding: wav.PCM, Channels: 1, SampleRate: 16000, BitsPerSample: 8},
		{Encoding: wav.PCM, Channels: 1, SampleRate: 16000, BitsPerSample: 24},
		{Encoding: wav.PCM, Channels: 1, SampleRate: 16000, BitsPerSample: 32},
		{Encoding: wav.Float, Channels: 1, SampleRate: 16000, BitsPerSample: 32},
		{Encoding: wav.Float, Channels: 1, SampleRate: 16000, BitsPerSample: 64, Extensible: true},
		{Encoding: wav.PCM, Channels: 2, SampleRate: 44100, BitsPerSample: 16},
		{Encoding: wav.PCM, Channels: 2, SampleRate: 48000, BitsPerSample: 24, Extensible: true},
		{Encoding: wav.Float, Channels: 6, SampleRate: 22050, BitsPerSample: 32},
		{Encoding: wav.PCM, Channels: 1, SampleRate: 8000, BitsPerSample: 16},
		{Encoding: wav.PCM, Channels: 3, SampleRate: 11025, BitsPerSample: 16},
		{Encoding: wav.PCM, Channels: 1, SampleRate: 7919, BitsPerSample: 16},
	}
	base := &recorder{}
	if err := e.Run(context.Background(), sttRequest(f.model, f.clip, plugins.STTTask{}), base); err != nil {
		t.Fatal(err)
	}
	baseText := base.decode(t).Text
	for _, fm := range tests {
		name := fmt.Sprintf("%s%d %dch %dHz ext=%v", fm.Encoding, fm.BitsPerSample, fm.Channels, fm.SampleRate, fm.Extensible)
		t.Run(name, func(t *testing.T) {
			mono := speechish(5, fm.SampleRate, 1)
			inter := make([]float64, 0, len(mono)*fm.Channels)
			for _, v := range mono {
				for range fm.Channels {
					inter = append(inter, v)
				}
			}
			p := writeWAV(t, t.TempDir(), "in.wav", fm, inter)
			ev := &recorder{}
			if err := e.Run(context.Background(), sttRequest(f.model, p, plugins.STTTask{}), ev); err != nil {
				t.Fatalf("Run: %v", err)
			}
			res := ev.decode(t)
			if res.Segments < 1 || res.Text == "" {
				t.Errorf("got %+v, want a non-empty transcript", res)
			}
			if math.Abs(res.Duration-5) > 0.001 {
				t.Errorf("duration: got %v, want 5", res.Duration)
			}
			// Lossless re-encodings of the 16-bit clip at 16 kHz decode to
			// the same samples (24/32-bit and float hold 16-bit values
			// exactly), so the transcript must not change.
			if fm.SampleRate == 16000 && fm.BitsPerSample > 8 && res.Text != baseText {
				t.Errorf("text differs from the 16-bit clip:\n got  %q\n want %q", res.Text, baseText)
			}
		})
	}
}

// TestResidency: a second job on the same model loads nothing; Unload frees
// it; the next job loads again.
func TestResidency(t *testing.T) {
	f := newFixture(t)
	e := testEngine(t)
	ctx := context.Background()
	run := func() {
		t.Helper()
		if err := e.Run(ctx, sttRequest(f.model, f.clip, plugins.STTTask{}), &recorder{}); err != nil {
			t.Fatal(err)
		}
	}
	run()
	run()
	if got := e.models.Loads(); got != 1 {
		t.Errorf("loads after two jobs: got %d, want 1", got)
	}
	res, _ := e.Resident(ctx)
	if len(res) != 1 || res[0].Model != "tiny-whisper" || res[0].Bytes == 0 || res[0].LastUsedUnixMs == 0 {
		t.Errorf("resident: got %+v, want tiny-whisper with its size and last use", res)
	}
	if err := e.Unload(ctx, "tiny-whisper"); err != nil {
		t.Fatal(err)
	}
	if err := e.Unload(ctx, "not-loaded"); err != nil {
		t.Errorf("unloading a model that is not resident: got %v, want nil", err)
	}
	if res, _ := e.Resident(ctx); len(res) != 0 {
		t.Errorf("resident after unload: got %+v, want none", res)
	}
	run()
	if got := e.models.Loads(); got != 2 {
		t.Errorf("loads after unload and a job: got %d, want 2", got)
	}
}

// TestEviction: with room for one model, a second model evicts the first.
func TestEviction(t *testing.T) {
	f := newFixture(t)
	e := newEngine(testLogger(), options{Threads: 2, MaxResident: 1})
	t.Cleanup(e.Close)
	ctx := context.Background()
	for _, id := range []string{"a", "b", "a"} {
		req := sttRequest(f.model, f.clip, plugins.STTTask{})
		req.Model = id
		if err := e.Run(ctx, req, &recorder{}); err != nil {
			t.Fatal(err)
		}
		res, _ := e.Resident(ctx)
		if len(res) != 1 || res[0].Model != id {
			t.Errorf("after a job on %s: resident %+v, want only %s", id, res, id)
		}
	}
	if got := e.models.Loads(); got != 3 {
		t.Errorf("loads: got %d, want 3", got)
	}
}

// TestBadAudioThenServe: every kind of bad input fails cleanly as bad input,
// and the engine then serves a good job on the same resident model.
func TestBadAudioThenServe(t *testing.T) {
	f := newFixture(t)
	e := testEngine(t)
	ctx := context.Background()
	if err := e.Run(ctx, sttRequest(f.model, f.clip, plugins.STTTask{}), &recorder{}); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(f.clip)
	if err != nil {
		t.Fatal(err)
	}
	claim := append([]byte{}, good[:44]...)
	copy(claim[40:44], []byte{0, 0, 0, 0x80}) // data chunk claims 2 GiB
	bad := map[string][]byte{
		"zero length":      nil,
		"truncated header": good[:20],
		"wrong magic":      append([]byte("OggS"), good[4:]...),
		"claims 2 GiB":     append(claim, good[44:1044]...),
	}
	for name, b := range bad {
		p := filepath.Join(t.TempDir(), "bad.wav")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		err := e.Run(ctx, sttRequest(f.model, p, plugins.STTTask{}), &recorder{})
		if got := jobErrorKind(err); got != plugins.ErrBadInput {
			t.Errorf("%s: got %q (%v), want %s", name, got, err, plugins.ErrBadInput)
		}
	}
	for _, task := range []plugins.STTTask{{Language: "klingon"}, {Timestamps: "ms"}} {
		err := e.Run(ctx, sttRequest(f.model, f.clip, task), &recorder{})
		if got := jobErrorKind(err); got != plugins.ErrBadInput {
			t.Errorf("%+v: got %q (%v), want %s", task, got, err, plugins.ErrBadInput)
		}
	}
	ev := &recorder{}
	if err := e.Run(ctx, sttRequest(f.model, f.clip, plugins.STTTask{}), ev); err != nil {
		t.Fatalf("good job after bad ones: %v", err)
	}
	if ev.decode(t).Segments < 1 {
		t.Error("good job after bad ones gave no segments")
	}
	if got := e.models.Loads(); got != 1 {
		t.Errorf("loads: got %d, want 1 (bad input must not unload the model)", got)
	}
}

// TestBadModel: a corrupt or missing model fails as an engine error naming
// whisper.cpp's reason, and a good model then works.
func TestBadModel(t *testing.T) {
	f := newFixture(t)
	e := testEngine(t)
	dir := t.TempDir()
	good, err := os.ReadFile(f.model)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"garbage":   []byte("not a model at all, just some bytes"),
		"truncated": good[:len(good)/2],
	}
	for name, b := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		req := sttRequest(p, f.clip, plugins.STTTask{})
		req.Model = name
		err := e.Run(context.Background(), req, &recorder{})
		if got := jobErrorKind(err); got != plugins.ErrEngine {
			t.Errorf("%s: got %q (%v), want %s", name, got, err, plugins.ErrEngine)
		}
		t.Logf("%s: %v", name, err)
	}
	req := sttRequest(filepath.Join(dir, "missing.bin"), f.clip, plugins.STTTask{})
	req.Model = "missing"
	if got := jobErrorKind(e.Run(context.Background(), req, &recorder{})); got != plugins.ErrEngine {
		t.Errorf("missing: got %q, want %s", got, plugins.ErrEngine)
	}
	if err := e.Run(context.Background(), sttRequest(f.model, f.clip, plugins.STTTask{}), &recorder{}); err != nil {
		t.Fatalf("good model after bad ones: %v", err)
	}
}

// TestCancel: cancelling the job at its first progress event aborts
// whisper.cpp through the abort callback; the engine then serves the next
// job. The clip spans several 30 s windows so there is work left to abort.
func TestCancel(t *testing.T) {
	f := newFixture(t)
	e := testEngine(t)
	long := writeWAV(t, f.dir, "long.wav", wav.Format{Encoding: wav.PCM, Channels: 1, SampleRate: 16000, BitsPerSample: 16}, speechish(95, 16000, 3))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ev := &recorder{onProgress: func(uint64) { cancel() }}
	err := e.Run(ctx, sttRequest(f.model, long, plugins.STTTask{}), ev)
	if got := jobErrorKind(err); got != plugins.ErrCancelled {
		t.Fatalf("got %q (%v), want %s", got, err, plugins.ErrCancelled)
	}
	if ev.result != nil {
		t.Errorf("cancelled job set a result: %s", ev.result)
	}
	for _, p := range ev.progress {
		if p == 100 {
			t.Errorf("cancelled job ran to completion: progress %v", ev.progress)
		}
	}
	// A receiver that goes away (Progress fails) stops the job the same way.
	ev = &recorder{failProgress: errors.New("stream closed")}
	err = e.Run(context.Background(), sttRequest(f.model, long, plugins.STTTask{}), ev)
	if got := jobErrorKind(err); got != plugins.ErrCancelled {
		t.Fatalf("failing receiver: got %q (%v), want %s", got, err, plugins.ErrCancelled)
	}
	if len(ev.progress) != 1 {
		t.Errorf("failing receiver: got %d progress calls, want 1 (stop at the first error)", len(ev.progress))
	}
	if err := e.Run(context.Background(), sttRequest(f.model, f.clip, plugins.STTTask{}), &recorder{}); err != nil {
		t.Fatalf("job after cancellation: %v", err)
	}
}

// TestVADEnergyGate: with vad and no VAD model, silence is cut before
// decoding and segment times land back on the original timeline.
func TestVADEnergyGate(t *testing.T) {
	f := newFixture(t)
	e := testEngine(t)
	fm := wav.Format{Encoding: wav.PCM, Channels: 1, SampleRate: 16000, BitsPerSample: 16}
	// 10 s of silence, 4 s of babble, 10 s of silence.
	sig := make([]float64, 10*16000)
	sig = append(sig, speechish(4, 16000, 5)...)
	sig = append(sig, make([]float64, 10*16000)...)
	p := writeWAV(t, f.dir, "gated.wav", fm, sig)
	ev := &recorder{}
	if err := e.Run(context.Background(), sttRequest(f.model, p, plugins.STTTask{VAD: true, Timestamps: "segment"}), ev); err != nil {
		t.Fatal(err)
	}
	res := ev.decode(t)
	if res.Duration != 24 {
		t.Errorf("duration: got %v, want 24 (the original length)", res.Duration)
	}
	if len(res.SegmentList) == 0 {
		t.Fatal("no segments")
	}
	for _, s := range res.SegmentList {
		if s.Start < 9.7 || s.End > 14.3 {
			t.Errorf("segment [%v, %v] lies outside the voiced 9.8..14.2 s (with padding)", s.Start, s.End)
		}
	}
	// Silence only: no speech, no decoding, an empty transcript.
	q := writeWAV(t, f.dir, "silent.wav", fm, make([]float64, 3*16000))
	ev = &recorder{}
	if err := e.Run(context.Background(), sttRequest(f.model, q, plugins.STTTask{VAD: true}), ev); err != nil {
		t.Fatal(err)
	}
	if res := ev.decode(t); res.Text != "" || res.Segments != 0 {
		t.Errorf("silence: got %+v, want an empty transcript", res)
	}
}

var timingRE = regexp.MustCompile(`(load|total) time =\s*([0-9.]+) ms`)

// BenchmarkRTF measures the real-time factor (processing seconds per audio
// second; lower is faster) of a job through the engine (sub-benchmark
// plugin: WAV decode, state set-up, whisper_full, result) and of whisper-cli
// (sub-benchmark whisper-cli: its own timings, total minus model load, since
// the plugin keeps the model resident) on the same model, 30 s clip and
// thread count. The speed ratio is whisper-cli's rtf / the plugin's (≥ 1:
// the plugin is at least as fast).
func BenchmarkRTF(b *testing.B) {
	cli := whisperCLI(b)
	dir := b.TempDir()
	model := writeModel(b, dir)
	const seconds = 30
	clip := writeWAV(b, dir, "bench.wav", wav.Format{Encoding: wav.PCM, Channels: 1, SampleRate: 16000, BitsPerSample: 16}, speechish(seconds, 16000, 9))
	const threads = 2
	b.Run("plugin", func(b *testing.B) {
		e := newEngine(testLogger(), options{Threads: threads})
		defer e.Close()
		req := sttRequest(model, clip, plugins.STTTask{})
		if err := e.Run(context.Background(), req, &recorder{}); err != nil {
			b.Fatal(err) // warm: load the model
		}
		b.ResetTimer()
		for b.Loop() {
			if err := e.Run(context.Background(), req, &recorder{}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(b.Elapsed().Seconds()/float64(b.N)/seconds, "rtf")
	})
	b.Run("whisper-cli", func(b *testing.B) {
		var busy time.Duration
		for b.Loop() {
			out, err := exec.Command(cli, "-m", model, "-f", clip, "-t", strconv.Itoa(threads), "-l", "en").CombinedOutput()
			if err != nil {
				b.Fatalf("whisper-cli: %v\n%s", err, out)
			}
			var load, total float64
			for _, m := range timingRE.FindAllStringSubmatch(string(out), -1) {
				v, _ := strconv.ParseFloat(m[2], 64)
				if m[1] == "load" {
					load = v
				} else {
					total = v
				}
			}
			if total == 0 {
				b.Fatalf("no timings in whisper-cli output:\n%s", out)
			}
			busy += time.Duration((total - load) * float64(time.Millisecond))
		}
		b.ReportMetric(busy.Seconds()/float64(b.N)/seconds, "rtf")
	})
}
