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
	n := toNRGBA(m)
	w, h := n.Rect.Dx(), n.Rect.Dy()
	plane := pw * ph
	out := make([]float32, 3*plane)
	for y := 0; y < ph; y++ {
		src := n.Pix[mirror(y, h)*n.Stride:]
		r, g, b := out[y*pw:], out[plane+y*pw:], out[2*plane+y*pw:]
		for x := 0; x < pw; x++ {
			sx := x
			if sx >= w {
				sx = mirror(x, w)
			}
			p := src[4*sx : 4*sx+3 : 4*sx+3]
			r[x] = float32(p[0]) / 255
			g[x] = float32(p[1]) / 255
			b[x] = float32(p[2]) / 255
		}
	}
	return out
}

// toNRGBA returns m's pixels, not premultiplied, with its top left at 0,0:
// m itself when it is such an *image.NRGBA, else a copy (fast for the
// *image.RGBA an opaque PNG decodes to).
func toNRGBA(m image.Image) *image.NRGBA {
	b := m.Bounds()
	if n, ok := m.(*image.NRGBA); ok && b.Min == (image.Point{}) {
		return n
	}
	n := image.NewNRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	if r, ok := m.(*image.RGBA); ok {
		for y := 0; y < b.Dy(); y++ {
			src := r.Pix[r.PixOffset(b.Min.X, b.Min.Y+y):]
			dst := n.Pix[y*n.Stride:]
			for x := 0; x < 4*b.Dx(); x += 4 {
				if src[x+3] == 255 {
					copy(dst[x:x+4], src[x:x+4])
				} else {
					c := color.NRGBAModel.Convert(color.RGBA{src[x], src[x+1], src[x+2], src[x+3]}).(color.NRGBA)
					dst[x], dst[x+1], dst[x+2], dst[x+3] = c.R, c.G, c.B, c.A
				}
			}
		}
		return n
	}
	for y := 0; y < b.Dy(); y++ {
		for x := 0; x < b.Dx(); x++ {
			n.SetNRGBA(x, y, color.NRGBAModel.Convert(m.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA))
		}
	}
	return n
}

// maskTensor returns m as a [1,1,ph,pw] float32 tensor's data, binarised:
// 1 (fill) where the pixel's grey level is above half, else 0; padded like
// the image. A mask with transparency counts transparent pixels as black.
func maskTensor(m image.Image, pw, ph int) []float32 {
	b := m.Bounds()
	w, h := b.Dx(), b.Dy()
	fill := make([]bool, w*h)
	if g, ok := m.(*image.Gray); ok {
		for y := 0; y < h; y++ {
			row := g.Pix[g.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := 0; x < w; x++ {
				fill[y*w+x] = row[x] > 127
			}
		}
	} else {
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				fill[y*w+x] = color.GrayModel.Convert(m.At(b.Min.X+x, b.Min.Y+y)).(color.Gray).Y > 127
			}
		}
	}
	out := make([]float32, pw*ph)
	for y := 0; y < ph; y++ {
		src := fill[mirror(y, h)*w:]
		dst := out[y*pw:]
		for x := 0; x < pw; x++ {
			if src[mirror(x, w)] {
				dst[x] = 1
			}
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
