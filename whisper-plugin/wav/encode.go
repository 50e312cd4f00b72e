package wav

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
)

// Encode writes a WAV file in format f holding the interleaved samples
// (len(samples) must be a multiple of f.Channels). Samples are clamped to
// [-1, 1] and integer encodings round to nearest. It exists for tests and
// demo clips; it writes the whole file in one pass and does not seek.
func Encode(w io.Writer, f Format, samples []float64) error {
	if err := f.validate(); err != nil {
		return err
	}
	if len(samples)%f.Channels != 0 {
		return fmt.Errorf("wav: %d samples is not a whole number of %d-channel frames", len(samples), f.Channels)
	}
	dataLen := int64(len(samples)) * int64(f.bytesPerSample())
	fmtLen := 16
	if f.Extensible {
		fmtLen = 40
	}
	if 4+8+int64(fmtLen)+8+dataLen > math.MaxUint32 {
		return fmt.Errorf("wav: %d bytes of samples do not fit a RIFF file", dataLen)
	}
	bw := bufio.NewWriter(w)
	le := binary.LittleEndian
	var hdr []byte
	hdr = append(hdr, "RIFF"...)
	hdr = le.AppendUint32(hdr, uint32(4+8+int64(fmtLen)+8+dataLen))
	hdr = append(hdr, "WAVE"...)
	hdr = append(hdr, "fmt "...)
	hdr = le.AppendUint32(hdr, uint32(fmtLen))
	tag := uint16(tagPCM)
	if f.Encoding == Float {
		tag = tagFloat
	}
	if f.Extensible {
		hdr = le.AppendUint16(hdr, tagExtensible)
	} else {
		hdr = le.AppendUint16(hdr, tag)
	}
	hdr = le.AppendUint16(hdr, uint16(f.Channels))
	hdr = le.AppendUint32(hdr, uint32(f.SampleRate))
	hdr = le.AppendUint32(hdr, uint32(f.SampleRate*f.blockAlign()))
	hdr = le.AppendUint16(hdr, uint16(f.blockAlign()))
	hdr = le.AppendUint16(hdr, uint16(f.BitsPerSample))
	if f.Extensible {
		hdr = le.AppendUint16(hdr, 22)                      // cbSize
		hdr = le.AppendUint16(hdr, uint16(f.BitsPerSample)) // valid bits
		hdr = le.AppendUint32(hdr, 0)                       // channel mask: unspecified
		hdr = le.AppendUint16(hdr, tag)
		hdr = append(hdr, subFormatTail[:]...)
	}
	hdr = append(hdr, "data"...)
	hdr = le.AppendUint32(hdr, uint32(dataLen))
	if _, err := bw.Write(hdr); err != nil {
		return fmt.Errorf("writing wav: %w", err)
	}
	var b [8]byte
	for _, s := range samples {
		s = max(-1, min(1, s))
		var p []byte
		switch {
		case f.Encoding == Float && f.BitsPerSample == 32:
			p = le.AppendUint32(b[:0], math.Float32bits(float32(s)))
		case f.Encoding == Float:
			p = le.AppendUint64(b[:0], math.Float64bits(s))
		case f.BitsPerSample == 8:
			p = append(b[:0], uint8(clampRound(s*128+128, 0, 255)))
		case f.BitsPerSample == 16:
			p = le.AppendUint16(b[:0], uint16(int16(clampRound(s*(1<<15), math.MinInt16, math.MaxInt16))))
		case f.BitsPerSample == 24:
			v := uint32(int32(clampRound(s*(1<<23), -(1 << 23), 1<<23-1)))
			p = append(b[:0], byte(v), byte(v>>8), byte(v>>16))
		default:
			p = le.AppendUint32(b[:0], uint32(int32(clampRound(s*(1<<31), math.MinInt32, math.MaxInt32))))
		}
		if _, err := bw.Write(p); err != nil {
			return fmt.Errorf("writing wav: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing wav: %w", err)
	}
	return nil
}

func clampRound(v, lo, hi float64) int64 {
	return int64(max(lo, min(hi, math.Round(v))))
}
