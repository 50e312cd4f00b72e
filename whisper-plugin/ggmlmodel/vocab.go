package ggmlmodel

import (
	"fmt"
	"math"
	"strings"
)

// Vocabulary returns the text tokens of generated models: 50257 ASCII words.
// Tokens 32..126 are the printable ASCII characters themselves (so any ASCII
// prompt can be tokenised); the other byte tokens are "<0xNN>" placeholders;
// tokens from 256 on are syllable words, most with a leading space, so that
// a random model's output reads as word salad rather than bytes. Words may
// repeat: whisper.cpp only needs id → text to be total.
func Vocabulary() []string {
	const consonants = "bdfghjklmnprstvz"
	const vowels = "aeiou"
	words := make([]string, textTokens)
	for i := range 256 {
		if i >= 32 && i <= 126 {
			words[i] = string(rune(i))
		} else {
			words[i] = fmt.Sprintf("<0x%02X>", i)
		}
	}
	var b strings.Builder
	for i := 256; i < textTokens; i++ {
		w := i - 256
		b.Reset()
		if w%4 != 0 {
			b.WriteByte(' ')
		}
		x := uint32(w)*2654435761 + 12345
		for s := range 1 + int(x>>28)%3 {
			b.WriteByte(consonants[(x>>(s*8))%uint32(len(consonants))])
			b.WriteByte(vowels[(x>>(s*8+4))%uint32(len(vowels))])
		}
		words[i] = b.String()
	}
	return words
}

// MelFilters returns the n-band log-mel filterbank whisper uses (librosa's
// mel(sr=16000, n_fft=400, n_mels=n) with the Slaney scale and area
// normalisation), row-major n × 201.
func MelFilters(n int) []float32 {
	hzToMel := func(f float64) float64 {
		const fSp, minLogHz, minLogMel = 200.0 / 3, 1000.0, 15.0
		if f < minLogHz {
			return f / fSp
		}
		return minLogMel + math.Log(f/minLogHz)/(math.Log(6.4)/27)
	}
	melToHz := func(m float64) float64 {
		const fSp, minLogHz, minLogMel = 200.0 / 3, 1000.0, 15.0
		if m < minLogMel {
			return m * fSp
		}
		return minLogHz * math.Exp((m-minLogMel)*(math.Log(6.4)/27))
	}
	fmax := float64(sampleRate) / 2
	lo, hi := hzToMel(0), hzToMel(fmax)
	pts := make([]float64, n+2) // band edges in Hz
	for i := range pts {
		pts[i] = melToHz(lo + (hi-lo)*float64(i)/float64(n+1))
	}
	out := make([]float32, n*nFreq)
	for m := range n {
		enorm := 2 / (pts[m+2] - pts[m])
		for k := range nFreq {
			f := fmax * float64(k) / float64(nFreq-1)
			lower := (f - pts[m]) / (pts[m+1] - pts[m])
			upper := (pts[m+2] - f) / (pts[m+2] - pts[m+1])
			out[m*nFreq+k] = float32(max(0, min(lower, upper)) * enorm)
		}
	}
	return out
}
