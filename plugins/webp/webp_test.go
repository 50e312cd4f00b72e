package webp

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"math/rand/v2"
	"testing"

	xwebp "golang.org/x/image/webp"
)

// noisy returns a w×h image of pseudo-random pixels; when opaque is false
// the alpha channel is random too.
func noisy(w, h int, opaque bool, seed uint64) *image.NRGBA {
	r := rand.New(rand.NewPCG(seed, 1))
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := 0; i < len(m.Pix); i += 4 {
		v := r.Uint32()
		m.Pix[i], m.Pix[i+1], m.Pix[i+2], m.Pix[i+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
		if opaque {
			m.Pix[i+3] = 0xff
		}
	}
	return m
}

// opaqueImage hides *image.NRGBA's fast path and reports itself opaque, as
// the synthetic engine's procedural images do.
type opaqueImage struct{ m *image.NRGBA }

func (o opaqueImage) ColorModel() color.Model { return color.NRGBAModel }
func (o opaqueImage) Bounds() image.Rectangle { return o.m.Bounds() }
func (o opaqueImage) At(x, y int) color.Color { return o.m.At(x, y) }
func (o opaqueImage) Opaque() bool            { return true }

func TestEncodeDecodesPixelExact(t *testing.T) {
	sizes := []struct{ w, h int }{{1, 1}, {3, 7}, {7, 3}, {2, 2}, {64, 1}, {1, 64}, {513, 257}}
	for _, sz := range sizes {
		for _, opaque := range []bool{false, true} {
			name := image.Rect(0, 0, sz.w, sz.h).String()
			if opaque {
				name += "/opaque"
			}
			t.Run(name, func(t *testing.T) {
				want := noisy(sz.w, sz.h, opaque, uint64(sz.w*1000+sz.h))
				var src image.Image = want
				if opaque {
					src = opaqueImage{want}
				}
				var buf bytes.Buffer
				if err := Encode(&buf, src); err != nil {
					t.Fatalf("Encode: %v", err)
				}
				got, err := xwebp.Decode(bytes.NewReader(buf.Bytes()))
				if err != nil {
					t.Fatalf("decode: %v", err)
				}
				if got.Bounds() != want.Bounds() {
					t.Fatalf("bounds = %v, want %v", got.Bounds(), want.Bounds())
				}
				for y := 0; y < sz.h; y++ {
					for x := 0; x < sz.w; x++ {
						g := color.NRGBAModel.Convert(got.At(x, y)).(color.NRGBA)
						if w := want.NRGBAAt(x, y); g != w {
							t.Fatalf("pixel (%d,%d) = %v, want %v", x, y, g, w)
						}
					}
				}
				cfg, err := xwebp.DecodeConfig(bytes.NewReader(buf.Bytes()))
				if err != nil {
					t.Fatalf("DecodeConfig: %v", err)
				}
				if cfg.Width != sz.w || cfg.Height != sz.h {
					t.Errorf("config = %dx%d, want %dx%d", cfg.Width, cfg.Height, sz.w, sz.h)
				}
			})
		}
	}
}

// TestRIFFSizes checks the container arithmetic against the bytes written:
// the RIFF size covers everything after its own field, and the file length
// is even.
func TestRIFFSizes(t *testing.T) {
	for _, sz := range []struct{ w, h int }{{1, 1}, {3, 7}, {5, 5}, {100, 3}} {
		var buf bytes.Buffer
		if err := Encode(&buf, noisy(sz.w, sz.h, false, 7)); err != nil {
			t.Fatal(err)
		}
		b := buf.Bytes()
		riff := int(b[4]) | int(b[5])<<8 | int(b[6])<<16 | int(b[7])<<24
		chunk := int(b[16]) | int(b[17])<<8 | int(b[18])<<16 | int(b[19])<<24
		if got, want := riff, len(b)-8; got != want {
			t.Errorf("%dx%d: RIFF size = %d, want %d", sz.w, sz.h, got, want)
		}
		if got, want := chunk+chunk&1, len(b)-20; got != want {
			t.Errorf("%dx%d: padded VP8L size = %d, want %d", sz.w, sz.h, got, want)
		}
		if len(b)%2 != 0 {
			t.Errorf("%dx%d: file length %d is odd", sz.w, sz.h, len(b))
		}
	}
}

func TestEncodeRejectsBadSizes(t *testing.T) {
	tests := []struct {
		name string
		r    image.Rectangle
	}{
		{"empty", image.Rect(0, 0, 0, 0)},
		{"zero width", image.Rect(0, 0, 0, 5)},
		{"too wide", image.Rect(0, 0, MaxDimension+1, 1)},
		{"too tall", image.Rect(0, 0, 1, MaxDimension+1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := Encode(&buf, image.NewNRGBA(tt.r)); err == nil {
				t.Fatal("Encode succeeded, want an error")
			}
			if buf.Len() != 0 {
				t.Errorf("wrote %d bytes before failing, want 0", buf.Len())
			}
		})
	}
}

// failAfter accepts n bytes and then fails every write.
type failAfter struct {
	n      int
	writes int
	max    int
}

var errBroken = errors.New("broken pipe")

func (f *failAfter) Write(p []byte) (int, error) {
	f.writes++
	f.max = max(f.max, len(p))
	if len(p) > f.n {
		return 0, errBroken
	}
	f.n -= len(p)
	return len(p), nil
}

func TestEncodeStopsOnWriterError(t *testing.T) {
	w := &failAfter{n: 100 << 10}
	err := Encode(w, noisy(400, 400, false, 1))
	if !errors.Is(err, errBroken) {
		t.Fatalf("Encode error = %v, want %v", err, errBroken)
	}
}

func TestEncodeStreamsInBoundedWrites(t *testing.T) {
	w := &failAfter{n: 1 << 30}
	if err := Encode(w, noisy(700, 700, false, 2)); err != nil {
		t.Fatal(err)
	}
	if w.max > flushSize+8 {
		t.Errorf("largest write = %d bytes, want at most %d", w.max, flushSize+8)
	}
	if w.writes < 700*700*4/flushSize {
		t.Errorf("only %d writes for a %d-byte file; output was buffered", w.writes, 700*700*4)
	}
}

func BenchmarkEncode512(b *testing.B) {
	m := noisy(512, 512, false, 3)
	var buf bytes.Buffer
	b.SetBytes(512 * 512 * 4)
	for b.Loop() {
		buf.Reset()
		if err := Encode(&buf, m); err != nil {
			b.Fatal(err)
		}
	}
}
