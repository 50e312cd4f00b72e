package wav

import (
	"fmt"
	"math"
)

// Resampling is band-limited interpolation (J. O. Smith's method): each
// output sample is the input convolved with a Kaiser-windowed sinc whose
// cutoff is the lower of the two Nyquist frequencies (times cutoffMargin),
// read from a table at tableRes points per zero crossing with linear
// interpolation. With zeroCrossings = 16 and β = 8.6 the stop band is about
// 80 dB down, far beyond what whisper's 80-bin log-mel front end can see.
// Output positions are computed in exact integer arithmetic, so long inputs
// do not drift. Each output sample is divided by the sum of the weights used,
// which keeps DC gain exactly 1 even at the edges.
const (
	zeroCrossings = 16
	tableRes      = 512
	kaiserBeta    = 8.6
	cutoffMargin  = 0.95
)

// Resample converts mono samples from rate from to rate to. It returns in
// unchanged when the rates are equal.
func Resample(in []float32, from, to int) ([]float32, error) {
	if from <= 0 || to <= 0 {
		return nil, fmt.Errorf("wav: resampling %d Hz to %d Hz", from, to)
	}
	if from == to || len(in) == 0 {
		return in, nil
	}
	g := gcd(from, to)
	up, down := int64(to/g), int64(from/g) // output i sits at input i*down/up
	fc := cutoffMargin * min(1, float64(to)/float64(from))
	half := float64(zeroCrossings) / fc // kernel half-width in input samples
	table := kernelTable()

	n := int64(len(in))
	outLen := (n*up + down - 1) / down
	out := make([]float32, outLen)
	reach := int64(math.Ceil(half))
	// Weights depend only on the output's phase (num % up); with few phases
	// (every common rate pair) they are computed once per phase.
	var bank [][]float64
	if up <= maxPhases {
		bank = make([][]float64, up)
	}
	weights := make([]float64, 2*reach+1)
	for i := range outLen {
		num := i * down
		base, phase := num/up, num%up // position = base + phase/up
		w := weights
		if bank != nil {
			if bank[phase] == nil {
				bank[phase] = phaseWeights(table, fc, float64(phase)/float64(up), reach)
			}
			w = bank[phase]
		} else {
			fillWeights(w, table, fc, float64(phase)/float64(up), reach)
		}
		// Tap j reads in[base-reach+j]; taps outside the input are
		// dropped and the rest renormalised.
		lo, hi := base-reach, base+reach
		var acc, wsum float64
		if lo >= 0 && hi < n {
			for j, v := range in[lo : hi+1] {
				acc += w[j] * float64(v)
			}
			wsum = 1
		} else {
			for k := max(0, lo); k <= min(n-1, hi); k++ {
				acc += w[k-lo] * float64(in[k])
				wsum += w[k-lo]
			}
		}
		if wsum != 0 {
			out[i] = float32(acc / wsum)
		}
	}
	return out, nil
}

// maxPhases bounds the per-phase weight cache (reach·2·8 bytes per phase).
const maxPhases = 4096

func phaseWeights(table []float64, fc, frac float64, reach int64) []float64 {
	w := make([]float64, 2*reach+1)
	fillWeights(w, table, fc, frac, reach)
	return w
}

// fillWeights sets w[j] to the kernel at the distance between input sample
// base-reach+j and the output position base+frac, normalised to sum 1.
func fillWeights(w, table []float64, fc, frac float64, reach int64) {
	var sum float64
	for j := range w {
		x := math.Abs(float64(int64(j)-reach)-frac) * fc // in zero crossings
		if x >= zeroCrossings {
			w[j] = 0
			continue
		}
		p := x * tableRes
		k := int(p)
		w[j] = table[k] + (table[k+1]-table[k])*(p-float64(k))
		sum += w[j]
	}
	for j := range w {
		w[j] /= sum
	}
}

// kernelTable samples sinc(x)·kaiser(x/zeroCrossings) for x in
// [0, zeroCrossings] at tableRes points per unit, plus one guard entry.
func kernelTable() []float64 {
	t := make([]float64, zeroCrossings*tableRes+2)
	i0b := besselI0(kaiserBeta)
	for j := range t {
		x := float64(j) / tableRes
		if x > zeroCrossings {
			break
		}
		r := x / zeroCrossings
		w := besselI0(kaiserBeta*math.Sqrt(max(0, 1-r*r))) / i0b
		s := 1.0
		if x != 0 {
			s = math.Sin(math.Pi*x) / (math.Pi * x)
		}
		t[j] = s * w
	}
	return t
}

// besselI0 is the zeroth-order modified Bessel function of the first kind,
// by its power series (converges fast for the arguments used here).
func besselI0(x float64) float64 {
	sum, term := 1.0, 1.0
	for k := 1; k < 200; k++ {
		term *= (x / 2) * (x / 2) / float64(k*k)
		sum += term
		if term < 1e-12*sum {
			break
		}
	}
	return sum
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// ToMono16k returns a's samples resampled to 16 kHz, the rate whisper.cpp
// wants (a.Samples itself when it is already at 16 kHz).
func (a *Audio) ToMono16k() ([]float32, error) {
	return Resample(a.Samples, a.Format.SampleRate, 16000)
}
