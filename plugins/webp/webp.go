// Package webp encodes images as lossless WebP files: a RIFF container
// holding one VP8L bitstream (RFC 9649, "WebP Image Format").
//
// The encoder is deliberately the simplest correct one. It uses no
// transforms, no colour cache, no backward references and fixed 8-bit
// prefix codes, so every pixel costs exactly 32 bits (24 when the image is
// opaque). That buys two things the synthetic engine needs: the file size is
// known before the first pixel is written, so the output streams straight
// to an [io.Writer] without buffering the image, and the code is short
// enough to read in one sitting. The price is size: the files are about as
// large as the raw pixels.
//
// The synthetic plugin and the onnx plugin (onnx-plugin) import it: an
// engine plugin that wants lossless WebP without a C library may too.
package webp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
	"io"
	"math/bits"
)

// MaxDimension is the largest width or height VP8L can describe.
const MaxDimension = 1 << 14

// flushSize is how many encoded bytes are gathered before a write to the
// underlying writer.
const flushSize = 64 << 10

// Encode writes m to w as a lossless WebP file. It reads m row by row and
// never holds more than a small buffer of encoded bytes, so m may be a
// procedural image larger than memory would comfortably hold.
//
// If m has an NRGBAAt(x, y int) color.NRGBA method, as *image.NRGBA does,
// Encode reads pixels through it. If m has an Opaque() bool method that
// reports true, the alpha channel is
// not stored (every pixel decodes with alpha 255). Pixels are stored
// non-premultiplied, as the format requires.
//
// Encode returns the first error from w; the output is then incomplete.
func Encode(w io.Writer, m image.Image) error {
	b := m.Bounds()
	width, height := b.Dx(), b.Dy()
	if width < 1 || height < 1 || width > MaxDimension || height > MaxDimension {
		return fmt.Errorf("webp: cannot encode a %dx%d image (each side must be 1..%d)", width, height, MaxDimension)
	}
	opaque := false
	if o, ok := m.(interface{ Opaque() bool }); ok {
		opaque = o.Opaque()
	}

	bw := &bitWriter{w: w, buf: make([]byte, 0, flushSize+8)}
	writeHeader(bw, width, height, opaque)

	// Every pixel has the same cost, so the bitstream length is known now
	// and the RIFF sizes can precede the data.
	pixelBits := uint64(32)
	if opaque {
		pixelBits = 24
	}
	totalBits := bw.count + uint64(width)*uint64(height)*pixelBits
	vp8lSize := (totalBits + 7) / 8
	padded := vp8lSize + vp8lSize&1 // RIFF chunks are padded to even length
	if err := writeRIFFHeader(w, vp8lSize, padded); err != nil {
		return err
	}

	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := pixelAt(m, x, y)
			// Fixed 8-bit codes: the code for symbol s is s itself, sent
			// most significant bit first into the LSB-first bitstream.
			v := uint64(rev(c.G)) | uint64(rev(c.R))<<8 | uint64(rev(c.B))<<16
			if opaque {
				bw.writeBits(v, 24)
			} else {
				bw.writeBits(v|uint64(rev(c.A))<<24, 32)
			}
		}
		if bw.err != nil {
			return bw.err
		}
	}
	bw.align()
	if padded != vp8lSize {
		bw.writeBits(0, 8)
	}
	bw.flush()
	if bw.err != nil {
		return bw.err
	}
	if got := bw.count; got != padded*8 {
		// A bug in this file, not a runtime condition; say so loudly.
		return fmt.Errorf("webp: internal error: wrote %d bits, announced %d", got, padded*8)
	}
	return nil
}

// nrgbaImage is an image that can return a pixel without boxing it in a
// color.Color, as *image.NRGBA can.
type nrgbaImage interface {
	image.Image
	NRGBAAt(x, y int) color.NRGBA
}

// pixelAt returns the non-premultiplied colour at (x, y), without an
// allocation when m is an nrgbaImage.
func pixelAt(m image.Image, x, y int) color.NRGBA {
	if n, ok := m.(nrgbaImage); ok {
		return n.NRGBAAt(x, y)
	}
	return color.NRGBAModel.Convert(m.At(x, y)).(color.NRGBA)
}

func rev(v uint8) uint8 { return bits.Reverse8(v) }

// writeRIFFHeader writes the RIFF and VP8L chunk headers for a VP8L
// payload of size bytes (padded to an even length in the file).
func writeRIFFHeader(w io.Writer, size, padded uint64) error {
	if 4+8+padded > 1<<32-1 {
		return errors.New("webp: image too large for a RIFF container")
	}
	var h [20]byte
	copy(h[0:4], "RIFF")
	binary.LittleEndian.PutUint32(h[4:8], uint32(4+8+padded))
	copy(h[8:12], "WEBP")
	copy(h[12:16], "VP8L")
	binary.LittleEndian.PutUint32(h[16:20], uint32(size))
	_, err := w.Write(h[:])
	return err
}

// writeHeader writes the VP8L header and the prefix codes (RFC 9649
// sections 3 to 6) up to the first pixel.
func writeHeader(bw *bitWriter, width, height int, opaque bool) {
	bw.writeBits(0x2f, 8) // signature
	bw.writeBits(uint64(width-1), 14)
	bw.writeBits(uint64(height-1), 14)
	alphaUsed := uint64(1)
	if opaque {
		alphaUsed = 0
	}
	bw.writeBits(alphaUsed, 1)
	bw.writeBits(0, 3) // version
	bw.writeBits(0, 1) // no transform
	bw.writeBits(0, 1) // no colour cache
	bw.writeBits(0, 1) // one prefix-code group for the whole image

	// Green also carries the 24 backward-reference length codes, unused.
	writeFixed8(bw, 256+24)
	writeFixed8(bw, 256) // red
	writeFixed8(bw, 256) // blue
	if opaque {
		writeSimple(bw, 255) // alpha: always 255, zero bits per pixel
	} else {
		writeFixed8(bw, 256)
	}
	writeSimple(bw, 0) // distance: never used
}

// codeLengthOrder is the order in which code-length code lengths are sent.
var codeLengthOrder = [...]int{17, 18, 0, 1, 2, 3, 4, 5, 16, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}

// writeFixed8 writes a "normal" prefix code over an alphabet of n symbols
// in which the first 256 symbols have length 8 and the rest length 0.
//
// The code lengths are themselves sent with a code-length code in which
// only the lengths 0 and 8 occur, each with a 1-bit code: canonically
// length 0 is "0" and length 8 is "1".
func writeFixed8(bw *bitWriter, n int) {
	bw.writeBits(0, 1)  // normal code
	const numCodes = 12 // enough of codeLengthOrder to reach length 8
	bw.writeBits(numCodes-4, 4)
	for _, sym := range codeLengthOrder[:numCodes] {
		l := uint64(0)
		if sym == 0 || sym == 8 {
			l = 1
		}
		bw.writeBits(l, 3)
	}
	bw.writeBits(0, 1) // max_symbol = alphabet size
	for i := range n {
		if i < 256 {
			bw.writeBits(1, 1)
		} else {
			bw.writeBits(0, 1)
		}
	}
}

// writeSimple writes a "simple" prefix code with the single symbol sym,
// which then costs zero bits each time it is used.
func writeSimple(bw *bitWriter, sym uint8) {
	bw.writeBits(1, 1) // simple code
	bw.writeBits(0, 1) // one symbol
	if sym < 2 {
		bw.writeBits(0, 1) // symbol fits in 1 bit
		bw.writeBits(uint64(sym), 1)
		return
	}
	bw.writeBits(1, 1) // symbol in 8 bits
	bw.writeBits(uint64(sym), 8)
}

// bitWriter packs bits least significant first, as VP8L requires, and
// hands whole bytes to w in batches of about flushSize.
type bitWriter struct {
	w     io.Writer
	buf   []byte
	acc   uint64 // pending bits, the oldest in the low end
	n     uint   // number of pending bits in acc
	count uint64 // bits written so far, including pending ones
	err   error  // first error from w; later writes are dropped
}

// writeBits appends the low n bits of v; n is at most 32.
func (bw *bitWriter) writeBits(v uint64, n uint) {
	bw.acc |= v << bw.n
	bw.n += n
	bw.count += uint64(n)
	for bw.n >= 8 {
		bw.buf = append(bw.buf, byte(bw.acc))
		bw.acc >>= 8
		bw.n -= 8
	}
	if len(bw.buf) >= flushSize {
		bw.flush()
	}
}

// align pads the pending bits with zeros up to a whole byte.
func (bw *bitWriter) align() {
	if bw.n > 0 {
		bw.writeBits(0, 8-bw.n)
	}
}

// flush hands the whole bytes gathered so far to w.
func (bw *bitWriter) flush() {
	if bw.err == nil && len(bw.buf) > 0 {
		_, bw.err = bw.w.Write(bw.buf)
	}
	bw.buf = bw.buf[:0]
}
