package main

import (
	"bytes"
	"fmt"
	"image"
	"image/png"
	"unsafe"
)

// rgbImage is an 8-bit image of 1 (grey) or 3 (RGB) channels, rows top to
// bottom. An engine result lives in Pix (Go memory); an input image loaded
// for the engine lives in C memory (cpix) until release.
type rgbImage struct {
	Width, Height, Channels int
	Pix                     []byte
	cpix                    unsafe.Pointer
}

// jobImages are a generation's input images, loaded at the job's size.
type jobImages struct {
	init, ref, mask *rgbImage
}

func (ji *jobImages) release() {
	ji.init.release()
	ji.ref.release()
	ji.mask.release()
}

// encodePNG encodes an RGB image as an opaque 8-bit truecolour PNG.
func encodePNG(m *rgbImage) ([]byte, error) {
	if m.Channels != 3 || len(m.Pix) != m.Width*m.Height*3 {
		return nil, fmt.Errorf("encodePNG: not an RGB image (%dx%dx%d, %d bytes)", m.Width, m.Height, m.Channels, len(m.Pix))
	}
	img := image.NewNRGBA(image.Rect(0, 0, m.Width, m.Height))
	for i, j := 0, 0; i < len(m.Pix); i, j = i+3, j+4 {
		img.Pix[j], img.Pix[j+1], img.Pix[j+2], img.Pix[j+3] = m.Pix[i], m.Pix[i+1], m.Pix[i+2], 0xff
	}
	var buf bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("encodePNG: %w", err)
	}
	return buf.Bytes(), nil
}
