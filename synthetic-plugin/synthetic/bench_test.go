package synthetic

import (
	"context"
	"testing"

	"github.com/stokerhq/stoker/plugins"
)

// sink is the cheapest Events: it counts bytes and drops everything, so
// the benchmarks measure the engine alone. The pipeline benchmarks compare
// against these figures.
type sink struct{ bytes int }

func (s *sink) Progress(step, total uint64, unit string) error { return nil }
func (s *sink) Log(level, message string) error                { return nil }
func (s *sink) Output(ext string, p []byte) error              { s.bytes += len(p); return nil }
func (s *sink) Result(json []byte) error                       { s.bytes += len(json); return nil }

func benchRun(b *testing.B, r *plugins.RunRequest) {
	e := New(nil)
	ctx := context.Background()
	s := &sink{}
	b.ReportAllocs()
	for b.Loop() {
		s.bytes = 0
		if err := e.Run(ctx, r, s); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(s.bytes), "out-bytes/op")
}

// BenchmarkRunLLM is one chat completion with the spec's default budget
// (maxTokens 512); the answer ends by itself at 8 to 32 words.
func BenchmarkRunLLM(b *testing.B) { benchRun(b, llmReq("Name three rivers.", 512)) }

// BenchmarkRunSTT transcribes one second of 16 kHz audio.
func BenchmarkRunSTT(b *testing.B) {
	benchRun(b, sttReq(writeWAV(b, b.TempDir(), "clip.wav", 1, 0), ""))
}

// BenchmarkRunTTS speaks a 24-character sentence (1.9 s of audio).
func BenchmarkRunTTS(b *testing.B) { benchRun(b, ttsReq("Welcome back, traveller.", 1)) }

// BenchmarkRunImagePNG draws the spec's default 512x512 as PNG.
func BenchmarkRunImagePNG(b *testing.B) { benchRun(b, imageReq("a moss golem", 512, 512, "png")) }

// BenchmarkRunImageWebP draws the spec's default 512x512 as lossless WebP.
func BenchmarkRunImageWebP(b *testing.B) { benchRun(b, imageReq("a moss golem", 512, 512, "webp")) }

// BenchmarkRunVideo animates the spec's defaults: 2 s of 512x512 at
// DefaultFPS (16 frames).
func BenchmarkRunVideo(b *testing.B) { benchRun(b, videoReq("a paper boat", 2, 0, 512, 512)) }
