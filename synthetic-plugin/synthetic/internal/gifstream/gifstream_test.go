package gifstream

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"image/gif"
	"math/rand/v2"
	"testing"
)

func grey(n int) color.Palette {
	p := make(color.Palette, n)
	for i := range p {
		v := uint8(i * 255 / max(1, n-1))
		p[i] = color.RGBA{v, 255 - v, v / 2, 255}
	}
	return p
}

func frame(w, h, colours int, r *rand.Rand) *image.Paletted {
	m := image.NewPaletted(image.Rect(0, 0, w, h), nil)
	for i := range m.Pix {
		m.Pix[i] = uint8(r.IntN(colours))
	}
	return m
}

func TestFramesDecode(t *testing.T) {
	tests := []struct {
		w, h, colours, frames, delay int
	}{
		{1, 1, 1, 1, 0},
		{3, 7, 2, 3, 5},
		{7, 3, 3, 2, 10},
		{65, 33, 16, 4, 12},
		{40, 40, 216, 5, 4},
		{257, 31, 256, 3, 2},
	}
	for _, tt := range tests {
		name := image.Rect(0, 0, tt.w, tt.h).String()
		t.Run(name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(tt.w), uint64(tt.colours)))
			p := grey(tt.colours)
			var buf bytes.Buffer
			gw, err := NewWriter(&buf, tt.w, tt.h, p, tt.delay)
			if err != nil {
				t.Fatal(err)
			}
			var want []*image.Paletted
			for range tt.frames {
				m := frame(tt.w, tt.h, tt.colours, r)
				want = append(want, m)
				if err := gw.WriteFrame(m); err != nil {
					t.Fatal(err)
				}
			}
			if err := gw.Close(); err != nil {
				t.Fatal(err)
			}

			g, err := gif.DecodeAll(bytes.NewReader(buf.Bytes()))
			if err != nil {
				t.Fatalf("DecodeAll: %v", err)
			}
			if len(g.Image) != tt.frames {
				t.Fatalf("frames = %d, want %d", len(g.Image), tt.frames)
			}
			if g.LoopCount != 0 {
				t.Errorf("loop count = %d, want 0 (forever)", g.LoopCount)
			}
			if g.Config.Width != tt.w || g.Config.Height != tt.h {
				t.Errorf("canvas = %dx%d, want %dx%d", g.Config.Width, g.Config.Height, tt.w, tt.h)
			}
			for i, m := range g.Image {
				if g.Delay[i] != tt.delay {
					t.Errorf("frame %d delay = %d, want %d", i, g.Delay[i], tt.delay)
				}
				if !bytes.Equal(m.Pix, want[i].Pix) {
					t.Fatalf("frame %d pixels differ", i)
				}
				for j, c := range p {
					if got, want := color.RGBAModel.Convert(m.Palette[j]), color.RGBAModel.Convert(c); got != want {
						t.Fatalf("frame %d palette[%d] = %v, want %v", i, j, got, want)
					}
				}
			}
		})
	}
}

func TestNewWriterRejects(t *testing.T) {
	tests := []struct {
		name          string
		w, h, colours int
		delay         int
	}{
		{"zero width", 0, 5, 2, 1},
		{"too tall", 5, MaxDimension + 1, 2, 1},
		{"no colours", 5, 5, 0, 1},
		{"too many colours", 5, 5, 257, 1},
		{"negative delay", 5, 5, 2, -1},
		{"delay overflow", 5, 5, 2, 1 << 16},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if _, err := NewWriter(&buf, tt.w, tt.h, grey(tt.colours), tt.delay); err == nil {
				t.Fatal("NewWriter succeeded, want an error")
			}
			if buf.Len() != 0 {
				t.Errorf("wrote %d bytes before failing", buf.Len())
			}
		})
	}
}

func TestWriteFrameRejects(t *testing.T) {
	var buf bytes.Buffer
	gw, err := NewWriter(&buf, 4, 4, grey(4), 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.WriteFrame(image.NewPaletted(image.Rect(0, 0, 4, 5), nil)); err == nil {
		t.Error("a frame of the wrong size was accepted")
	}
	m := image.NewPaletted(image.Rect(0, 0, 4, 4), nil)
	m.Pix[3] = 200 // beyond the 2-bit LZW alphabet of a 4-colour palette
	if err := gw.WriteFrame(m); err == nil {
		t.Error("a pixel outside the palette was accepted")
	}
	if err := gw.Close(); err == nil {
		t.Error("Close after a failed frame succeeded")
	}
	if err := gw.WriteFrame(image.NewPaletted(image.Rect(0, 0, 4, 4), nil)); err == nil {
		t.Error("WriteFrame after Close succeeded")
	}
	if err := gw.Close(); err == nil {
		t.Error("second Close succeeded")
	}
}

type failingWriter struct{ budget int }

var errGone = errors.New("receiver gone")

func (f *failingWriter) Write(p []byte) (int, error) {
	if len(p) > f.budget {
		return 0, errGone
	}
	f.budget -= len(p)
	return len(p), nil
}

func TestWriterErrorsStick(t *testing.T) {
	fw := &failingWriter{budget: 2000}
	gw, err := NewWriter(fw, 64, 64, grey(256), 1)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	var ferr error
	for range 10 {
		if ferr = gw.WriteFrame(frame(64, 64, 256, r)); ferr != nil {
			break
		}
	}
	if !errors.Is(ferr, errGone) {
		t.Fatalf("WriteFrame error = %v, want %v", ferr, errGone)
	}
	if err := gw.WriteFrame(frame(64, 64, 256, r)); !errors.Is(err, errGone) {
		t.Errorf("next WriteFrame = %v, want the first error again", err)
	}
}
