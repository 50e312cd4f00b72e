package main

import (
	"math"
	"math/rand/v2"
	"testing"
)

// clip builds audio at 16 kHz from pieces of silence (amp 0, faint noise)
// and tone (a 300 Hz sine at amp).
func clip(pieces ...struct{ sec, amp float64 }) []float32 {
	rng := rand.New(rand.NewPCG(1, 2))
	var out []float32
	for _, p := range pieces {
		n := int(p.sec * sampleRate)
		for i := range n {
			v := 0.0005*rng.NormFloat64() + p.amp*math.Sin(2*math.Pi*300*float64(i)/sampleRate)
			out = append(out, float32(v))
		}
	}
	return out
}

type piece = struct{ sec, amp float64 }

func TestEnergyGate(t *testing.T) {
	tests := []struct {
		name   string
		audio  []float32
		want   []span // in samples, before the frame rounding tolerance
		tolSec float64
	}{
		{
			name:  "two bursts",
			audio: clip(piece{1, 0}, piece{0.5, 0.3}, piece{2, 0}, piece{0.5, 0.3}, piece{1, 0}),
			// each burst padded by 200 ms
			want:   []span{{int(0.8 * sampleRate), int(1.7 * sampleRate)}, {int(3.3 * sampleRate), int(4.2 * sampleRate)}},
			tolSec: 0.031,
		},
		{
			name:   "short gap joined",
			audio:  clip(piece{1, 0}, piece{0.5, 0.3}, piece{0.2, 0}, piece{0.5, 0.3}, piece{1, 0}),
			want:   []span{{int(0.8 * sampleRate), int(2.4 * sampleRate)}},
			tolSec: 0.031,
		},
		{
			name:  "silence only",
			audio: clip(piece{3, 0}),
			want:  nil,
		},
		{
			name:   "all voiced",
			audio:  clip(piece{2, 0.3}),
			want:   []span{{0, 2 * sampleRate}},
			tolSec: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := energyGate(tt.audio, sampleRate)
			if len(m.spans) != len(tt.want) {
				t.Fatalf("spans: got %v, want %v", m.spans, tt.want)
			}
			tol := int(tt.tolSec * sampleRate)
			for i, s := range m.spans {
				w := tt.want[i]
				if abs(s.start-w.start) > tol || abs(s.end-w.end) > tol {
					t.Errorf("span %d: got %v, want %v ±%d samples", i, s, w, tol)
				}
			}
			total := 0
			for _, s := range m.spans {
				total += s.end - s.start
			}
			if got := len(m.apply(tt.audio)); got != total {
				t.Errorf("apply: got %d samples, want %d", got, total)
			}
		})
	}
}

func abs(x int) int { return max(x, -x) }

func TestTimeMap(t *testing.T) {
	// Spans [1 s, 2 s) and [5 s, 6.5 s) of the original.
	m := &timeMap{rate: sampleRate, spans: []span{{1 * sampleRate, 2 * sampleRate}, {5 * sampleRate, 6.5 * sampleRate}}}
	tests := []struct {
		t    int64 // centiseconds in the gated audio
		end  bool
		want int64
	}{
		{0, false, 100},
		{50, false, 150},
		{100, true, 200},  // a segment ending at the joint ends in span 1
		{100, false, 500}, // one starting there starts in span 2
		{180, false, 580},
		{250, true, 650},
		{400, true, 650}, // past the end clamps to the last span's end
	}
	for _, tt := range tests {
		if got := m.toOriginal(tt.t, tt.end); got != tt.want {
			t.Errorf("toOriginal(%d, end=%v): got %d, want %d", tt.t, tt.end, got, tt.want)
		}
	}
}
