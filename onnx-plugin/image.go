package main

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	_ "image/gif"  // decoders for the job's input images
	_ "image/jpeg" //
	"image/png"
	"math"
	"os"

	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/plugins/webp"
	_ "golang.org/x/image/webp" //
)

// maxSide bounds an input image's width and height (checked from the
// header before the pixels are decoded).
const maxSide = 8192

// decodeFile decodes an input image (PNG, JPEG, GIF or WebP). A file that
// is missing, not an image or too large is bad input, named by what.
func decodeFile(what, path string) (image.Image, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, plugins.Errorf(plugins.ErrBadInput, "%s: %v", what, err)
	}
	cfg, _, err := image.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		return nil, plugins.Errorf(plugins.ErrBadInput, "%s: unreadable image: %v", what, err)
	}
	if cfg.Width < 1 || cfg.Height < 1 || cfg.Width > maxSide || cfg.Height > maxSide {
		return nil, plugins.Errorf(plugins.ErrBadInput, "%s: size %dx%d is outside 1..%d a side", what, cfg.Width, cfg.Height, maxSide)
	}
	m, _, err := image.Decode(bytes.NewReader(b))
	if err != nil {
		return nil, plugins.Errorf(plugins.ErrBadInput, "%s: unreadable image: %v", what, err)
	}
	return m, nil
}

// mirror maps a coordinate of the padded image to the input's: LaMa's
// pad_img_to_modulo pads with numpy's "symmetric" mode (the edge pixel
// repeated: ... c b a | a b c ... ), which this follows, on the bottom and
// right edges only. It holds for a pad wider than the image too.
func mirror(i, n int) int {
	i %= 2 * n
	if i >= n {
		i = 2*n - 1 - i
	}
	return i
}

// imageTensor returns m as a [1,3,ph,pw] float32 tensor's data in 0..1
// (RGB, alpha ignored), padded symmetrically to pw×ph.
func imageTensor(m image.Image, pw, ph int) []float32 {
	b := m.Bounds()
	w, h := b.Dx(), b.Dy()
	plane := pw * ph
	out := make([]float32, 3*plane)
	row := make([]color.NRGBA, w)
	for y := 0; y < ph; y++ {
		sy := b.Min.Y + mirror(y, h)
		for x := 0; x < w; x++ {
			row[x] = color.NRGBAModel.Convert(m.At(b.Min.X+x, sy)).(color.NRGBA)
		}
		for x := 0; x < pw; x++ {
			c := row[mirror(x, w)]
			i := y*pw + x
			out[i] = float32(c.R) / 255
			out[plane+i] = float32(c.G) / 255
			out[2*plane+i] = float32(c.B) / 255
		}
	}
	return out
}

// maskTensor returns m as a [1,1,ph,pw] float32 tensor's data, binarised:
// 1 (fill) where the pixel's grey level is above half, else 0; padded like
// the image. A mask with transparency counts transparent pixels as black.
func maskTensor(m image.Image, pw, ph int) []float32 {
	b := m.Bounds()
	w, h := b.Dx(), b.Dy()
	out := make([]float32, pw*ph)
	row := make([]float32, w)
	for y := 0; y < ph; y++ {
		sy := b.Min.Y + mirror(y, h)
		for x := 0; x < w; x++ {
			if color.GrayModel.Convert(m.At(b.Min.X+x, sy)).(color.Gray).Y > 127 {
				row[x] = 1
			} else {
				row[x] = 0
			}
		}
		for x := 0; x < pw; x++ {
			out[y*pw+x] = row[mirror(x, w)]
		}
	}
	return out
}

// outputImage turns the model's [1,3,ph,pw] output into the w×h image at
// its top left: each value clamped to 0..1, times 255, rounded.
func outputImage(data []float32, pw, ph, w, h int) (*image.NRGBA, error) {
	plane := pw * ph
	if len(data) != 3*plane || w > pw || h > ph {
		return nil, fmt.Errorf("output has %d values, want 3×%d×%d", len(data), ph, pw)
	}
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		p := m.Pix[y*m.Stride:]
		for x := 0; x < w; x++ {
			i := y*pw + x
			p[4*x] = to8(data[i])
			p[4*x+1] = to8(data[plane+i])
			p[4*x+2] = to8(data[2*plane+i])
			p[4*x+3] = 255
		}
	}
	return m, nil
}

// to8 is LaMa's clip(v, 0, 1) × 255, rounded to the nearest level (a NaN is
// 0).
func to8(v float32) uint8 {
	if !(v > 0) {
		return 0
	}
	if v >= 1 {
		return 255
	}
	return uint8(math.Round(float64(v) * 255))
}

// encode writes m as ext: PNG, or lossless WebP (plugins/webp).
func encode(m *image.NRGBA, ext string) ([]byte, error) {
	var buf bytes.Buffer
	var err error
	if ext == "png" {
		err = (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&buf, m)
	} else {
		err = webp.Encode(&buf, m)
	}
	return buf.Bytes(), err
}
