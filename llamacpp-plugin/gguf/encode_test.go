package gguf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"testing"
)

func TestF16(t *testing.T) {
	tests := []struct {
		name string
		in   float32
		want uint16
	}{
		{"zero", 0, 0x0000},
		{"negative zero", float32(math.Copysign(0, -1)), 0x8000},
		{"one", 1, 0x3c00},
		{"minus two", -2, 0xc000},
		{"tenth (rounded)", 0.1, 0x2e66},
		{"largest", 65504, 0x7bff},
		{"overflow", 1e5, 0x7c00},
		{"smallest subnormal", 1.0 / (1 << 24), 0x0001},
		{"underflow", 1.0 / (1 << 26), 0x0000},
		{"tie to even", 1 + 1.0/(1<<11), 0x3c00},
		{"infinity", float32(math.Inf(-1)), 0xfc00},
		{"nan", float32(math.NaN()), 0x7e00},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := F16(tt.in); got != tt.want {
				t.Errorf("F16(%g) = %#04x, want %#04x", tt.in, got, tt.want)
			}
		})
	}
}

// f16Float decodes a normal or zero half (enough for the Q8_0 scales here).
func f16Float(h uint16) float32 {
	if h&0x7fff == 0 {
		return 0
	}
	exp := int(h>>10&0x1f) - 15
	man := 1 + float64(h&0x3ff)/1024
	v := float32(math.Ldexp(man, exp))
	if h&0x8000 != 0 {
		v = -v
	}
	return v
}

func TestAppendQ8_0(t *testing.T) {
	xs := make([]float32, 2*Q8_0Block)
	for i := range Q8_0Block {
		xs[i] = float32(i-16) / 8 // second block stays zero
	}
	got, err := AppendQ8_0(nil, xs)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2*q8_0BlockBytes {
		t.Fatalf("got %d bytes, want %d", len(got), 2*q8_0BlockBytes)
	}
	d := f16Float(binary.LittleEndian.Uint16(got))
	if want := float32(2.0 / 127); math.Abs(float64(d-want)) > 1e-3*float64(want) {
		t.Errorf("scale %g, want %g", d, want)
	}
	for i := range Q8_0Block {
		v := float32(int8(got[2+i])) * d
		if math.Abs(float64(v-xs[i])) > float64(d)/2+1e-6 {
			t.Errorf("value %d: decoded %g, want %g (±%g)", i, v, xs[i], d/2)
		}
	}
	if q := int8(got[2]); q != -127 {
		t.Errorf("largest magnitude quantized to %d, want -127", q)
	}
	if zero := got[q8_0BlockBytes:]; !bytes.Equal(zero, make([]byte, q8_0BlockBytes)) {
		t.Errorf("zero block encoded as %x, want all zero", zero)
	}
	if _, err := AppendQ8_0(nil, make([]float32, 33)); err == nil {
		t.Error("AppendQ8_0 of 33 values: got nil error, want one")
	}
}

// TestStreamMatchesData checks that a streamed tensor writes the same file
// as the same data held in memory, and that a stream of the wrong length or
// one that fails fails the write.
func TestStreamMatchesData(t *testing.T) {
	xs := make([]float32, 64*2)
	for i := range xs {
		xs[i] = float32(i) / 100
	}
	q, err := AppendQ8_0(nil, xs)
	if err != nil {
		t.Fatal(err)
	}
	f16 := AppendF16(nil, xs[:5])
	held := File{Tensors: []Tensor{
		{Name: "q", Dims: []uint64{64, 2}, Type: TensorQ8_0, Data: q},
		{Name: "h", Dims: []uint64{5}, Type: TensorF16, Data: f16},
	}}
	stream := func(p []byte) func(io.Writer) error {
		return func(w io.Writer) error { _, err := w.Write(p); return err }
	}
	streamed := File{Tensors: []Tensor{
		{Name: "q", Dims: []uint64{64, 2}, Type: TensorQ8_0, Stream: stream(q)},
		{Name: "h", Dims: []uint64{5}, Type: TensorF16, Stream: stream(f16)},
	}}
	var a, b bytes.Buffer
	if err := held.Write(&a); err != nil {
		t.Fatal(err)
	}
	if err := streamed.Write(&b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("streamed file differs from the held one")
	}
	h, err := ReadHeader(bytes.NewReader(b.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if got := h.Tensors[1].Offset; got != alignUp(uint64(len(q)), DefaultAlignment) {
		t.Errorf("second tensor at offset %d, want %d", got, alignUp(uint64(len(q)), DefaultAlignment))
	}

	boom := errors.New("boom")
	bad := []struct {
		name string
		t    Tensor
	}{
		{"short stream", Tensor{Name: "s", Dims: []uint64{4}, Type: TensorF32, Stream: stream(make([]byte, 12))}},
		{"long stream", Tensor{Name: "l", Dims: []uint64{4}, Type: TensorF32, Stream: stream(make([]byte, 20))}},
		{"failing stream", Tensor{Name: "f", Dims: []uint64{4}, Type: TensorF32, Stream: func(io.Writer) error { return boom }}},
		{"Q8_0 row not whole blocks", Tensor{Name: "r", Dims: []uint64{48, 2}, Type: TensorQ8_0, Data: make([]byte, 3*q8_0BlockBytes)}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			f := File{Tensors: []Tensor{tt.t}}
			if err := f.Write(io.Discard); err == nil {
				t.Fatal("got nil error, want one")
			}
		})
	}
}
