// Package gifstream writes animated GIF files one frame at a time.
//
// The standard library's image/gif encodes an animation from a slice of all
// its frames, so a long or large animation must sit in memory whole before
// the first byte is written. This package writes the header first and then
// each frame as it is produced, so memory stays at one frame whatever the
// length. All frames share one global palette and loop forever.
//
// Only the synthetic plugin imports this package.
package gifstream

import (
	"compress/lzw"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
	"io"
	"math/bits"
)

// MaxDimension is the largest width or height a GIF can describe.
const MaxDimension = 1<<16 - 1

// Writer writes one animated GIF. Create it with [NewWriter], call
// [Writer.WriteFrame] for every frame and [Writer.Close] once at the end.
// A Writer is not safe for concurrent use.
type Writer struct {
	w             io.Writer
	width, height int
	delay         uint16 // centiseconds per frame
	litWidth      int    // LZW minimum code size
	err           error  // first write error; sticky
	closed        bool
}

// NewWriter writes the GIF header, the global colour table built from p and
// a loop-forever extension to w, and returns a Writer for the frames. Each
// frame is shown for delay hundredths of a second. p must hold 1 to 256
// colours; it is padded with black to a power of two. Writes go straight
// to w in small pieces, so w should be buffered.
func NewWriter(w io.Writer, width, height int, p color.Palette, delay int) (*Writer, error) {
	if width < 1 || height < 1 || width > MaxDimension || height > MaxDimension {
		return nil, fmt.Errorf("gifstream: cannot write a %dx%d animation", width, height)
	}
	if len(p) < 1 || len(p) > 256 {
		return nil, fmt.Errorf("gifstream: palette of %d colours, want 1 to 256", len(p))
	}
	if delay < 0 || delay > 1<<16-1 {
		return nil, fmt.Errorf("gifstream: frame delay %d out of range", delay)
	}
	// The colour table holds 2^(sizeBits+1) entries.
	sizeBits := max(0, bits.Len(uint(len(p)-1))-1)
	gw := &Writer{
		w: w, width: width, height: height, delay: uint16(delay),
		litWidth: max(2, sizeBits+1),
	}

	b := make([]byte, 0, 13+3*256+19)
	b = append(b, "GIF89a"...)
	b = binary.LittleEndian.AppendUint16(b, uint16(width))
	b = binary.LittleEndian.AppendUint16(b, uint16(height))
	b = append(b, 0x80|0x70|byte(sizeBits), 0, 0) // global table, 8-bit colour resolution; background 0; square pixels
	for i := range 1 << (sizeBits + 1) {
		var r, g, bl uint8
		if i < len(p) {
			c := color.RGBAModel.Convert(p[i]).(color.RGBA)
			r, g, bl = c.R, c.G, c.B
		}
		b = append(b, r, g, bl)
	}
	// NETSCAPE2.0 application extension: loop count 0 means forever.
	b = append(b, 0x21, 0xff, 11)
	b = append(b, "NETSCAPE2.0"...)
	b = append(b, 3, 1, 0, 0, 0)
	if _, err := w.Write(b); err != nil {
		return nil, fmt.Errorf("gifstream: writing header: %w", err)
	}
	return gw, nil
}

// WriteFrame writes m as the next frame. m must have the animation's size;
// its pixels are indices into the palette given to NewWriter (its own
// palette is ignored).
func (gw *Writer) WriteFrame(m *image.Paletted) error {
	if gw.closed {
		return errors.New("gifstream: write after Close")
	}
	if gw.err != nil {
		return gw.err
	}
	if r := m.Bounds(); r.Dx() != gw.width || r.Dy() != gw.height {
		return fmt.Errorf("gifstream: frame is %dx%d, animation is %dx%d", r.Dx(), r.Dy(), gw.width, gw.height)
	}

	b := make([]byte, 0, 8+10+1)
	// Graphic control extension: no disposal, no transparency, the delay.
	b = append(b, 0x21, 0xf9, 4, 0)
	b = binary.LittleEndian.AppendUint16(b, gw.delay)
	b = append(b, 0, 0)
	// Image descriptor: the whole canvas, no local table, not interlaced.
	b = append(b, 0x2c, 0, 0, 0, 0)
	b = binary.LittleEndian.AppendUint16(b, uint16(gw.width))
	b = binary.LittleEndian.AppendUint16(b, uint16(gw.height))
	b = append(b, 0, byte(gw.litWidth))
	if _, err := gw.w.Write(b); err != nil {
		gw.err = fmt.Errorf("gifstream: writing frame header: %w", err)
		return gw.err
	}

	bw := &blockWriter{w: gw.w}
	lw := lzw.NewWriter(bw, lzw.LSB, gw.litWidth)
	r := m.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		i := m.PixOffset(r.Min.X, y)
		if _, err := lw.Write(m.Pix[i : i+gw.width]); err != nil {
			lw.Close()
			gw.err = fmt.Errorf("gifstream: writing frame: %w", err)
			return gw.err
		}
	}
	if err := lw.Close(); err != nil {
		gw.err = fmt.Errorf("gifstream: writing frame: %w", err)
		return gw.err
	}
	if err := bw.close(); err != nil {
		gw.err = fmt.Errorf("gifstream: writing frame: %w", err)
		return gw.err
	}
	return nil
}

// Close writes the GIF trailer. It does not close the underlying writer.
// Calling Close twice is an error.
func (gw *Writer) Close() error {
	if gw.closed {
		return errors.New("gifstream: already closed")
	}
	gw.closed = true
	if gw.err != nil {
		return gw.err
	}
	if _, err := gw.w.Write([]byte{0x3b}); err != nil {
		return fmt.Errorf("gifstream: writing trailer: %w", err)
	}
	return nil
}

// blockWriter cuts the LZW stream into the length-prefixed sub-blocks of at
// most 255 bytes that GIF image data is made of.
type blockWriter struct {
	w   io.Writer
	buf [256]byte // buf[0] is the length of the block in buf[1:]
	n   int
}

func (bw *blockWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		c := copy(bw.buf[1+bw.n:], p)
		bw.n += c
		p = p[c:]
		written += c
		if bw.n == 255 {
			if err := bw.flush(); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

func (bw *blockWriter) flush() error {
	if bw.n == 0 {
		return nil
	}
	bw.buf[0] = byte(bw.n)
	_, err := bw.w.Write(bw.buf[:1+bw.n])
	bw.n = 0
	return err
}

// close writes the last partial block and the zero-length terminator.
func (bw *blockWriter) close() error {
	if err := bw.flush(); err != nil {
		return err
	}
	_, err := bw.w.Write([]byte{0})
	return err
}
