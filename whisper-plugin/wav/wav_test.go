package wav

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// tone returns n frames of a sine at freq Hz and amplitude amp, the same
// on every channel except that channel c is scaled by (c+1)/channels, so
// the downmix is amp·(channels+1)/(2·channels)·sin.
func tone(n, rate, channels int, freq, amp float64) []float64 {
	s := make([]float64, n*channels)
	for i := range n {
		v := amp * math.Sin(2*math.Pi*freq*float64(i)/float64(rate))
		for c := range channels {
			s[i*channels+c] = v * float64(c+1) / float64(channels)
		}
	}
	return s
}

func encode(t testing.TB, f Format, samples []float64) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := Encode(&b, f, samples); err != nil {
		t.Fatalf("Encode(%+v): %v", f, err)
	}
	return b.Bytes()
}

func decode(b []byte) (*Audio, error) { return Decode(bytes.NewReader(b), int64(len(b))) }

func TestRoundTripEveryEncoding(t *testing.T) {
	tests := []struct {
		name string
		f    Format
		tol  float64 // quantisation tolerance
	}{
		{"pcm8 mono", Format{Encoding: PCM, Channels: 1, SampleRate: 8000, BitsPerSample: 8}, 1.0 / 128},
		{"pcm16 mono", Format{Encoding: PCM, Channels: 1, SampleRate: 16000, BitsPerSample: 16}, 1.0 / 32768},
		{"pcm16 stereo", Format{Encoding: PCM, Channels: 2, SampleRate: 44100, BitsPerSample: 16}, 1.0 / 32768},
		{"pcm24 stereo", Format{Encoding: PCM, Channels: 2, SampleRate: 48000, BitsPerSample: 24}, 1.0 / (1 << 23)},
		{"pcm32 6ch", Format{Encoding: PCM, Channels: 6, SampleRate: 22050, BitsPerSample: 32}, 1e-9},
		{"float32 mono", Format{Encoding: Float, Channels: 1, SampleRate: 11025, BitsPerSample: 32}, 1e-7},
		{"float64 stereo", Format{Encoding: Float, Channels: 2, SampleRate: 96000, BitsPerSample: 64}, 1e-7},
		{"extensible pcm24", Format{Encoding: PCM, Channels: 2, SampleRate: 48000, BitsPerSample: 24, Extensible: true}, 1.0 / (1 << 23)},
		{"extensible float32 3ch", Format{Encoding: Float, Channels: 3, SampleRate: 7919, BitsPerSample: 32, Extensible: true}, 1e-7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const n = 2000
			src := tone(n, tt.f.SampleRate, tt.f.Channels, 440, 0.8)
			a, err := decode(encode(t, tt.f, src))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if a.Format != tt.f {
				t.Errorf("format: got %+v, want %+v", a.Format, tt.f)
			}
			if len(a.Samples) != n {
				t.Fatalf("frames: got %d, want %d", len(a.Samples), n)
			}
			for i, got := range a.Samples {
				var want float64
				for c := range tt.f.Channels {
					want += src[i*tt.f.Channels+c]
				}
				want /= float64(tt.f.Channels)
				if d := math.Abs(float64(got) - want); d > tt.tol+1e-7 {
					t.Fatalf("sample %d: got %v, want %v (±%v)", i, got, want, tt.tol)
				}
			}
			if got, want := a.Duration(), float64(n)/float64(tt.f.SampleRate); got != want {
				t.Errorf("duration: got %v, want %v", got, want)
			}
		})
	}
}

// TestPCM16Exact pins the integer scale to whisper.cpp's own reader
// (miniaudio: s16 / 32768), which the parity test depends on.
func TestPCM16Exact(t *testing.T) {
	f := Format{Encoding: PCM, Channels: 1, SampleRate: 16000, BitsPerSample: 16}
	b := encode(t, f, []float64{-1, -0.5, 0, 0.5, 1})
	a, err := decode(b)
	if err != nil {
		t.Fatal(err)
	}
	want := []float32{-1, -0.5, 0, 0.5, 32767.0 / 32768}
	for i := range want {
		if a.Samples[i] != want[i] {
			t.Errorf("sample %d: got %v, want %v", i, a.Samples[i], want[i])
		}
	}
}

// riff assembles a RIFF/WAVE file from raw chunks, with an honest RIFF size.
func riff(chunks ...[]byte) []byte {
	var body []byte
	body = append(body, "WAVE"...)
	for _, c := range chunks {
		body = append(body, c...)
	}
	out := append([]byte("RIFF"), binary.LittleEndian.AppendUint32(nil, uint32(len(body)))...)
	return append(out, body...)
}

func chunk(id string, size uint32, payload []byte) []byte {
	b := append([]byte(id), binary.LittleEndian.AppendUint32(nil, size)...)
	return append(b, payload...)
}

func fmtPayload(tag, channels uint16, rate uint32, align, bits uint16) []byte {
	le := binary.LittleEndian
	var b []byte
	b = le.AppendUint16(b, tag)
	b = le.AppendUint16(b, channels)
	b = le.AppendUint32(b, rate)
	b = le.AppendUint32(b, rate*uint32(align))
	b = le.AppendUint16(b, align)
	return le.AppendUint16(b, bits)
}

func TestBadInput(t *testing.T) {
	good := encode(t, Format{Encoding: PCM, Channels: 1, SampleRate: 16000, BitsPerSample: 16}, tone(100, 16000, 1, 440, 0.5))
	fmt16 := chunk("fmt ", 16, fmtPayload(1, 1, 16000, 2, 16))
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"short header", []byte("RIFF\x10\x00")},
		{"wrong magic", append([]byte("RIFX"), good[4:]...)},
		{"jpeg", []byte("\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00")},
		{"not wave", append(append([]byte{}, good[:8]...), append([]byte("AVI "), good[12:]...)...)},
		{"truncated header", good[:30]},
		{"truncated in data", good[:len(good)-7]},
		{"no data chunk", riff(fmt16)},
		{"data before fmt", riff(chunk("data", 4, []byte{0, 0, 0, 0}), fmt16)},
		{"zero length data", riff(fmt16, chunk("data", 0, nil))},
		{"one byte of 16-bit data", riff(fmt16, chunk("data", 1, []byte{0}))},
		{"claims 2 GiB", riff(fmt16, chunk("data", 2<<30, []byte{1, 2, 3, 4}))},
		{"junk chunk claims 4 GiB", riff(chunk("LIST", 0xFFFFFFF0, []byte("abcd")), fmt16)},
		{"fmt chunk claims 2 GiB", riff(chunk("fmt ", 2<<30, fmtPayload(1, 1, 16000, 2, 16)))},
		{"tiny fmt chunk", riff(chunk("fmt ", 8, []byte("12345678")), chunk("data", 2, []byte{0, 0}))},
		{"alaw", riff(chunk("fmt ", 16, fmtPayload(6, 1, 8000, 1, 8)), chunk("data", 2, []byte{0, 0}))},
		{"12-bit pcm", riff(chunk("fmt ", 16, fmtPayload(1, 1, 8000, 2, 12)), chunk("data", 2, []byte{0, 0}))},
		{"16-bit float", riff(chunk("fmt ", 16, fmtPayload(3, 1, 8000, 2, 16)), chunk("data", 2, []byte{0, 0}))},
		{"zero channels", riff(chunk("fmt ", 16, fmtPayload(1, 0, 16000, 0, 16)), chunk("data", 2, []byte{0, 0}))},
		{"1000 channels", riff(chunk("fmt ", 16, fmtPayload(1, 1000, 16000, 2000, 16)), chunk("data", 2, []byte{0, 0}))},
		{"zero rate", riff(chunk("fmt ", 16, fmtPayload(1, 1, 0, 2, 16)), chunk("data", 2, []byte{0, 0}))},
		{"4 GHz rate", riff(chunk("fmt ", 16, fmtPayload(1, 1, 0xFFFFFFFF, 2, 16)), chunk("data", 2, []byte{0, 0}))},
		{"lying block align", riff(chunk("fmt ", 16, fmtPayload(1, 2, 16000, 2, 16)), chunk("data", 4, []byte{0, 0, 0, 0}))},
		{"two fmt chunks", riff(fmt16, fmt16, chunk("data", 2, []byte{0, 0}))},
		{"nan float", riff(chunk("fmt ", 16, fmtPayload(3, 1, 16000, 4, 32)), chunk("data", 4, binary.LittleEndian.AppendUint32(nil, math.Float32bits(float32(math.NaN())))))},
		{"rf64", append([]byte("RF64"), good[4:]...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := decode(tt.in)
			if err == nil {
				t.Fatalf("got %d samples and no error, want an error", len(a.Samples))
			}
			if !errors.Is(err, ErrFormat) {
				t.Errorf("got %v, want an error wrapping ErrFormat", err)
			}
		})
	}
}

// TestLenient covers files that are odd but valid: unknown chunks before and
// after fmt (with odd-size padding), a wrong RIFF size, a streaming data size
// of 0xFFFFFFFF, and a trailing partial frame.
func TestLenient(t *testing.T) {
	fmt16 := chunk("fmt ", 16, fmtPayload(1, 2, 16000, 4, 16))
	frames := []byte{0x00, 0x40, 0x00, 0x40, 0x00, 0xC0, 0x00, 0xC0} // +0.5,+0.5 then -0.5,-0.5
	tests := []struct {
		name string
		in   []byte
		want []float32
	}{
		{"junk chunks", riff(chunk("junk", 3, []byte("abc\x00")), fmt16, chunk("LIST", 1, []byte("x\x00")), chunk("data", 8, frames)), []float32{0.5, -0.5}},
		{"streaming size", riff(fmt16, chunk("data", 0xFFFFFFFF, frames)), []float32{0.5, -0.5}},
		{"partial frame", riff(fmt16, chunk("data", 10, append(append([]byte{}, frames...), 1, 2))), []float32{0.5, -0.5}},
		{"trailing chunk", riff(fmt16, chunk("data", 8, frames), chunk("id3 ", 2, []byte("ab"))), []float32{0.5, -0.5}},
	}
	wrongSize := riff(fmt16, chunk("data", 8, frames))
	binary.LittleEndian.PutUint32(wrongSize[4:], 0xFFFFFFFF)
	tests = append(tests, struct {
		name string
		in   []byte
		want []float32
	}{"wrong riff size", wrongSize, []float32{0.5, -0.5}})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := decode(tt.in)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if len(a.Samples) != len(tt.want) {
				t.Fatalf("got %v, want %v", a.Samples, tt.want)
			}
			for i := range tt.want {
				if a.Samples[i] != tt.want[i] {
					t.Errorf("sample %d: got %v, want %v", i, a.Samples[i], tt.want[i])
				}
			}
		})
	}
}

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.wav")
	f := Format{Encoding: PCM, Channels: 2, SampleRate: 44100, BitsPerSample: 16}
	if err := os.WriteFile(p, encode(t, f, tone(441, 44100, 2, 440, 0.5)), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := ReadFile(p)
	if err != nil {
		t.Fatalf("ReadFile: %v", err)
	}
	if got, want := len(a.Samples), 441; got != want {
		t.Errorf("frames: got %d, want %d", got, want)
	}
	if _, err := ReadFile(filepath.Join(dir, "missing.wav")); err == nil || errors.Is(err, ErrFormat) {
		t.Errorf("missing file: got %v, want an I/O error not wrapping ErrFormat", err)
	}
	if _, err := ReadFile(dir); !errors.Is(err, ErrFormat) {
		t.Errorf("directory: got %v, want ErrFormat", err)
	}
}

// amplitudeAt measures the amplitude of the freq component of x (sampled at
// rate) by correlating with a sine and a cosine, skipping edge effects.
func amplitudeAt(x []float32, rate int, freq float64) float64 {
	edge := len(x) / 10
	var s, c float64
	n := 0
	for i := edge; i < len(x)-edge; i++ {
		ph := 2 * math.Pi * freq * float64(i) / float64(rate)
		s += float64(x[i]) * math.Sin(ph)
		c += float64(x[i]) * math.Cos(ph)
		n++
	}
	return 2 * math.Hypot(s, c) / float64(n)
}

func TestResample(t *testing.T) {
	tests := []struct {
		name     string
		from, to int
		freq     float64
		wantAmp  float64 // expected amplitude of freq after resampling
		tol      float64
	}{
		{"44.1k to 16k passband", 44100, 16000, 1000, 0.5, 0.005},
		{"48k to 16k passband", 48000, 16000, 3000, 0.5, 0.005},
		{"8k to 16k passband", 8000, 16000, 1000, 0.5, 0.005},
		{"odd 7919 to 16k", 7919, 16000, 500, 0.5, 0.005},
		{"odd 22051 to 16k", 22051, 16000, 2000, 0.5, 0.005},
		{"48k to 16k rejects 12 kHz", 48000, 16000, 12000, 0, 0.002},
		{"44.1k to 16k rejects 9 kHz", 44100, 16000, 9000, 0, 0.005},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := make([]float32, tt.from/2) // half a second
			for i := range in {
				in[i] = float32(0.5 * math.Sin(2*math.Pi*tt.freq*float64(i)/float64(tt.from)))
			}
			out, err := Resample(in, tt.from, tt.to)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := len(out), (len(in)*tt.to+tt.from-1)/tt.from; got != want {
				t.Errorf("length: got %d, want %d", got, want)
			}
			// An aliased tone shows up at |to - freq| (or freq folded).
			probe := tt.freq
			if probe > float64(tt.to)/2 {
				probe = float64(tt.to) - probe
			}
			if got := amplitudeAt(out, tt.to, probe); math.Abs(got-tt.wantAmp) > tt.tol {
				t.Errorf("amplitude at %v Hz: got %.5f, want %.5f ±%v", probe, got, tt.wantAmp, tt.tol)
			}
		})
	}
}

func TestResampleDC(t *testing.T) {
	in := make([]float32, 1000)
	for i := range in {
		in[i] = 0.25
	}
	out, err := Resample(in, 44100, 16000)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range out {
		if math.Abs(float64(v)-0.25) > 1e-6 {
			t.Fatalf("sample %d: got %v, want 0.25", i, v)
		}
	}
	same, err := Resample(in, 16000, 16000)
	if err != nil || &same[0] != &in[0] {
		t.Errorf("same rate: got a copy or %v, want the input back", err)
	}
	if _, err := Resample(in, 0, 16000); err == nil {
		t.Error("zero rate: got no error")
	}
}

func BenchmarkResample44k(b *testing.B) {
	in := make([]float32, 44100*10)
	for i := range in {
		in[i] = float32(math.Sin(float64(i) * 0.05))
	}
	b.SetBytes(int64(len(in)) * 4)
	for b.Loop() {
		if _, err := Resample(in, 44100, 16000); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzDecode feeds arbitrary bytes to Decode: it must never panic, every
// failure must wrap ErrFormat (the input is in memory, so no I/O errors),
// and a success must hold no more samples than the input has bytes.
func FuzzDecode(f *testing.F) {
	f.Add(encode(f, Format{Encoding: PCM, Channels: 2, SampleRate: 44100, BitsPerSample: 16}, tone(10, 44100, 2, 440, 0.5)))
	f.Add(encode(f, Format{Encoding: Float, Channels: 1, SampleRate: 16000, BitsPerSample: 32, Extensible: true}, tone(10, 16000, 1, 440, 0.5)))
	f.Add(riff(chunk("fmt ", 16, fmtPayload(1, 1, 16000, 2, 16)), chunk("data", 0xFFFFFFFF, []byte{1, 2, 3, 4})))
	f.Add([]byte("RIFF\x00\x00\x00\x00WAVE"))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := decode(b)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v does not wrap ErrFormat", err)
			}
			return
		}
		if len(a.Samples) == 0 || len(a.Samples) > len(b) {
			t.Fatalf("%d samples from %d bytes", len(a.Samples), len(b))
		}
		if err := a.Format.validate(); err != nil {
			t.Fatalf("decoded an invalid format %+v: %v", a.Format, err)
		}
	})
}
