package main

import (
	"math"
	"slices"
)

// The energy gate is the plugin's voice-activity detection when a job asks
// for vad but carries no VAD model (whisper.cpp's own VAD needs a Silero
// model file). It is deliberately simple and only ever removes long
// stretches of quiet:
//
//   - the audio is cut into 30 ms frames and each frame's RMS level taken;
//   - the noise floor is the 10th percentile of the frame levels, and a
//     frame is "voiced" when it is 12 dB above the floor (or, when the
//     file has no quiet stretch to measure a floor in, no more than 30 dB
//     below the loudest frame) and above -55 dBFS, so that near-silent
//     files are not amplified into speech;
//   - voiced runs closer than 300 ms are joined, and every run is padded by
//     200 ms on each side (whisper needs the onsets and tails);
//   - if nothing is voiced, there is no speech and nothing is decoded.
//
// The voiced spans are concatenated and transcribed as one clip; segment
// times are mapped back onto the original timeline by timeMap.
const (
	gateFrameMs   = 30
	gateFloorPct  = 0.10
	gateAboveDB   = 12
	gateBelowPeak = 30
	gateMinDBFS   = -55
	gateJoinMs    = 300
	gatePadMs     = 200
	centisecondHz = 100
)

// span is a half-open range of samples.
type span struct{ start, end int }

// timeMap maps positions in the gated (concatenated) audio back to the
// original audio.
type timeMap struct {
	rate  int
	spans []span // in the original, sorted, disjoint
}

// energyGate finds the voiced spans of x (mono, at rate).
func energyGate(x []float32, rate int) *timeMap {
	frame := rate * gateFrameMs / 1000
	n := len(x) / frame
	if len(x)%frame != 0 {
		n++
	}
	levels := make([]float64, n)
	for i := range n {
		seg := x[i*frame : min(len(x), (i+1)*frame)]
		var sum float64
		for _, v := range seg {
			sum += float64(v) * float64(v)
		}
		levels[i] = 10 * math.Log10(sum/float64(len(seg))+1e-12)
	}
	sorted := slices.Clone(levels)
	slices.Sort(sorted)
	floor := sorted[int(float64(len(sorted)-1)*gateFloorPct)]
	peak := sorted[len(sorted)-1]
	thresh := max(min(floor+gateAboveDB, peak-gateBelowPeak), gateMinDBFS)

	var spans []span
	join := rate * gateJoinMs / 1000
	for i, l := range levels {
		if l < thresh {
			continue
		}
		s := span{i * frame, min(len(x), (i+1)*frame)}
		if k := len(spans) - 1; k >= 0 && s.start-spans[k].end <= join {
			spans[k].end = s.end
			continue
		}
		spans = append(spans, s)
	}
	pad := rate * gatePadMs / 1000
	var out []span
	for _, s := range spans {
		s = span{max(0, s.start-pad), min(len(x), s.end+pad)}
		if k := len(out) - 1; k >= 0 && s.start <= out[k].end {
			out[k].end = s.end
			continue
		}
		out = append(out, s)
	}
	return &timeMap{rate: rate, spans: out}
}

// apply returns the voiced samples of x, concatenated.
func (m *timeMap) apply(x []float32) []float32 {
	var out []float32
	for _, s := range m.spans {
		out = append(out, x[s.start:s.end]...)
	}
	return out
}

// toOriginal maps t (centiseconds in the gated audio) to centiseconds in the
// original. A time exactly at the joint of two spans belongs to the earlier
// span when end is true (a segment ending there) and to the later one
// otherwise.
func (m *timeMap) toOriginal(t int64, end bool) int64 {
	pos := int(t * int64(m.rate) / centisecondHz) // in gated samples
	off := 0
	for i, s := range m.spans {
		n := s.end - s.start
		last := i == len(m.spans)-1
		if pos < off+n || (end && pos == off+n) || last {
			p := s.start + min(max(pos-off, 0), n)
			return int64(p) * centisecondHz / int64(m.rate)
		}
		off += n
	}
	return t
}
