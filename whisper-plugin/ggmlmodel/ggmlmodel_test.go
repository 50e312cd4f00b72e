package ggmlmodel

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"github.com/stokerhq/stoker/llamacpp-plugin/gguf"
	"io"
	"math"
	"testing"
)

// parsed is the file read back the way whisper.cpp's loader reads it.
type parsed struct {
	hparams [11]int32
	nMel    int32
	nFFT    int32
	filters []float32
	words   []string
	tensors map[string]tensorInfo
}

type tensorInfo struct {
	typ  int32
	ne   []int32
	data []byte
}

func parse(t *testing.T, b []byte) parsed {
	t.Helper()
	r := bytes.NewReader(b)
	rd := func(v any) {
		t.Helper()
		if err := binary.Read(r, binary.LittleEndian, v); err != nil {
			t.Fatalf("reading at offset %d: %v", len(b)-r.Len(), err)
		}
	}
	var magic uint32
	rd(&magic)
	if magic != fileMagic {
		t.Fatalf("magic: got %#x, want %#x", magic, fileMagic)
	}
	var p parsed
	rd(&p.hparams)
	rd(&p.nMel)
	rd(&p.nFFT)
	p.filters = make([]float32, p.nMel*p.nFFT)
	rd(p.filters)
	var nWords int32
	rd(&nWords)
	for range nWords {
		var n uint32
		rd(&n)
		w := make([]byte, n)
		rd(w)
		p.words = append(p.words, string(w))
	}
	p.tensors = map[string]tensorInfo{}
	for r.Len() > 0 {
		var h [3]int32
		rd(&h)
		ne := make([]int32, h[0])
		rd(ne)
		name := make([]byte, h[1])
		rd(name)
		n := 1
		for _, v := range ne {
			n *= int(v)
		}
		size := 4
		if h[2] == typeF16 {
			size = 2
		}
		data := make([]byte, n*size)
		rd(data)
		if _, dup := p.tensors[string(name)]; dup {
			t.Fatalf("tensor %q written twice", name)
		}
		p.tensors[string(name)] = tensorInfo{typ: h[2], ne: ne, data: data}
	}
	return p
}

func write(t *testing.T, p Params) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := Write(&b, p); err != nil {
		t.Fatalf("Write: %v", err)
	}
	return b.Bytes()
}

func TestTinyLayout(t *testing.T) {
	p := TinyParams()
	m := parse(t, write(t, p))
	want := [11]int32{51865, 1500, 64, 1, 2, 448, 64, 1, 1, 80, 1}
	if m.hparams != want {
		t.Errorf("hparams: got %v, want %v", m.hparams, want)
	}
	if m.nMel != 80 || m.nFFT != 201 {
		t.Errorf("filters: got %d×%d, want 80×201", m.nMel, m.nFFT)
	}
	if got, want := len(m.words), 50257; got != want {
		t.Errorf("words: got %d, want %d", got, want)
	}
	// whisper.cpp's count: 7 + 15 per encoder block + 4 + 24 per decoder block.
	if got, want := len(m.tensors), 7+15*2+4+24*1; got != want {
		t.Errorf("tensors: got %d, want %d", got, want)
	}
	shapes := []struct {
		name string
		typ  int32
		ne   []int32
	}{
		{"encoder.positional_embedding", typeF32, []int32{64, 1500}},
		{"encoder.conv1.weight", typeF16, []int32{3, 80, 64}},
		{"encoder.conv1.bias", typeF32, []int32{1, 64}},
		{"encoder.conv2.weight", typeF16, []int32{3, 64, 64}},
		{"encoder.blocks.1.mlp.0.weight", typeF16, []int32{64, 256}},
		{"encoder.blocks.1.mlp.2.weight", typeF16, []int32{256, 64}},
		{"encoder.blocks.0.attn.key.weight", typeF16, []int32{64, 64}},
		{"decoder.token_embedding.weight", typeF16, []int32{64, 51865}},
		{"decoder.positional_embedding", typeF32, []int32{64, 448}},
		{"decoder.blocks.0.cross_attn.out.bias", typeF32, []int32{64}},
		{"decoder.blocks.0.cross_attn_ln.weight", typeF32, []int32{64}},
	}
	for _, s := range shapes {
		ti, ok := m.tensors[s.name]
		if !ok {
			t.Errorf("tensor %s missing", s.name)
			continue
		}
		if ti.typ != s.typ || !equal(ti.ne, s.ne) {
			t.Errorf("%s: got type %d shape %v, want type %d shape %v", s.name, ti.typ, ti.ne, s.typ, s.ne)
		}
	}
	// The shaped output rows (see tokenEmbedding): <|endoftext|> (50257)
	// reads only the EOT dimension; timestamps (from 50364) carry the
	// timestamp weight and a time order that falls with the index.
	te := m.tensors["decoder.token_embedding.weight"].data
	at := func(tok, dim int) float32 {
		return float16to32(binary.LittleEndian.Uint16(te[(tok*64+dim)*2:]))
	}
	if got := at(50257, eotDim); got != eotWeight {
		t.Errorf("EOT row, EOT dim: got %v, want %v", got, eotWeight)
	}
	if got := at(50364, tsDim); got != tsWeight {
		t.Errorf("first timestamp, timestamp dim: got %v, want %v", got, tsWeight)
	}
	if at(51864, tsOrderDim) >= at(50400, tsOrderDim) {
		t.Errorf("time order does not fall: %v at 30 s, %v at 0.72 s", at(51864, tsOrderDim), at(50400, tsOrderDim))
	}
	if got := at(1000, eotDim); got != 0 {
		t.Errorf("text row, EOT dim: got %v, want 0", got)
	}
	if _, ok := m.tensors["encoder.blocks.0.attn.key.bias"]; ok {
		t.Error("key projections have no bias in whisper, but one was written")
	}
}

func equal(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestEnglishOnly(t *testing.T) {
	p := TinyParams()
	p.Vocab = 51864
	m := parse(t, write(t, p))
	if got, want := len(m.words), 50256; got != want {
		t.Errorf("words: got %d, want %d (token 50256 is <|endoftext|>)", got, want)
	}
}

// TestDeterministic pins the bytes of tiny-whisper: the dev studio's catalog
// and cached test models rely on the generator giving the same file on every
// machine and Go release.
func TestDeterministic(t *testing.T) {
	a, b := write(t, TinyParams()), write(t, TinyParams())
	if !bytes.Equal(a, b) {
		t.Fatal("two writes of the same params differ")
	}
	sum := sha256.Sum256(a)
	const want = "d5867d8f63d3893722e90c185a45ae479e9ecb0dd5f1887eea132a4b01c128d7"
	if got := hex.EncodeToString(sum[:]); got != want {
		t.Errorf("sha256: got %s, want %s (size %d)", got, want, len(a))
	}
	p := TinyParams()
	p.Seed = 2
	if bytes.Equal(a, write(t, p)) {
		t.Error("a different seed gave the same file")
	}
}

func TestBadParams(t *testing.T) {
	mut := []struct {
		name string
		f    func(*Params)
	}{
		{"small vocab", func(p *Params) { p.Vocab = 1000 }},
		{"state mismatch", func(p *Params) { p.TextState = 32 }},
		{"heads do not divide", func(p *Params) { p.AudioHead = 3 }},
		{"zero layers", func(p *Params) { p.TextLayer = 0 }},
		{"zero mels", func(p *Params) { p.Mels = 0 }},
	}
	for _, tt := range mut {
		t.Run(tt.name, func(t *testing.T) {
			p := TinyParams()
			tt.f(&p)
			if err := Write(io.Discard, p); err == nil {
				t.Errorf("got no error for %+v", p)
			}
		})
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.n -= len(p); f.n < 0 {
		return 0, io.ErrShortWrite
	}
	return len(p), nil
}

func TestWriteError(t *testing.T) {
	if err := Write(&failWriter{n: 3 << 20}, TinyParams()); err == nil {
		t.Error("got no error from a failing writer")
	}
}

// float16to32 widens an IEEE half (normal numbers and zero only).
func float16to32(h uint16) float32 {
	if h&0x7fff == 0 {
		return 0
	}
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10&0x1f) - 15 + 127
	return math.Float32frombits(sign | exp<<23 | uint32(h&0x3ff)<<13)
}

func TestFloat16(t *testing.T) {
	tests := []struct {
		in   float32
		want uint16
	}{
		{0, 0x0000},
		{float32(math.Copysign(0, -1)), 0x8000},
		{1, 0x3c00},
		{-2, 0xc000},
		{0.5, 0x3800},
		{65504, 0x7bff},
		{65520, 0x7c00}, // rounds up to Inf
		{1e6, 0x7c00},
		{float32(math.Inf(-1)), 0xfc00},
		{6.103515625e-05, 0x0400},   // smallest normal
		{5.960464477539063e-08, 1},  // smallest subnormal
		{2.9802322387695312e-08, 0}, // half of it: ties to even (0)
		{1.0009765625, 0x3c01},      // 1 + 2^-10
		{1.00048828125, 0x3c00},     // 1 + 2^-11: tie, to even
		{1.00146484375, 0x3c02},     // 1 + 3·2^-11: tie, to even (up)
		{0.1, 0x2e66},
	}
	for _, tt := range tests {
		if got := gguf.F16(tt.in); got != tt.want {
			t.Errorf("float16(%v): got %#04x, want %#04x", tt.in, got, tt.want)
		}
	}
	if got := gguf.F16(float32(math.NaN())); got&0x7c00 != 0x7c00 || got&0x3ff == 0 {
		t.Errorf("float16(NaN): got %#04x, want a NaN", got)
	}
}

func TestMelFilters(t *testing.T) {
	f := MelFilters(80)
	if len(f) != 80*201 {
		t.Fatalf("len: got %d, want %d", len(f), 80*201)
	}
	prevPeak := -1
	for m := range 80 {
		row := f[m*201 : (m+1)*201]
		peak, area := 0, 0.0
		for k, v := range row {
			if v < 0 {
				t.Fatalf("band %d bin %d: got %v, want ≥ 0", m, k, v)
			}
			if v > row[peak] {
				peak = k
			}
			area += float64(v)
		}
		if area == 0 {
			t.Errorf("band %d is empty", m)
		}
		if peak < prevPeak {
			t.Errorf("band %d peaks at bin %d, below band %d's %d", m, peak, m-1, prevPeak)
		}
		prevPeak = peak
	}
	// Spot values of librosa.filters.mel(sr=16000, n_fft=400, n_mels=80),
	// the table whisper ships as mel_filters.npz.
	if got := f[0*201+1]; math.Abs(float64(got)-0.0248626) > 1e-6 {
		t.Errorf("band 0 bin 1: got %v, want SPOT1", got)
	}
}
