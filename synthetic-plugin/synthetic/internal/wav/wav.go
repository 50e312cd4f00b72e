// Package wav writes and inspects RIFF/WAVE headers: the canonical 44-byte
// header in front of 16-bit PCM samples the synthetic engine streams, and
// the format and length of a WAV file it is given to "transcribe".
//
// Only the synthetic plugin imports this package.
package wav

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// HeaderSize is the length of the header [WriteHeader] writes.
const HeaderSize = 44

// Format tags of the fmt chunk.
const (
	formatPCM        = 1
	formatFloat      = 3
	formatExtensible = 0xfffe
)

// Format describes how samples are stored.
type Format struct {
	SampleRate    uint32 // frames per second
	Channels      uint16
	BitsPerSample uint16
	Float         bool // IEEE float samples rather than integer PCM
}

// bytesPerSecond is the data rate of f, or 0 when f is unusable.
func (f Format) bytesPerSecond() uint64 {
	return uint64(f.SampleRate) * uint64(f.Channels) * uint64(f.BitsPerSample) / 8
}

// WriteHeader writes the canonical 44-byte header of an integer-PCM WAV
// file whose sample data is dataBytes long; the caller writes the samples
// (little endian, channels interleaved) after it.
func WriteHeader(w io.Writer, f Format, dataBytes uint32) error {
	if f.Float || f.SampleRate == 0 || f.Channels == 0 || f.BitsPerSample%8 != 0 || f.BitsPerSample == 0 {
		return fmt.Errorf("wav: cannot write header for format %+v", f)
	}
	if dataBytes > 1<<32-1-(HeaderSize-8) {
		return errors.New("wav: data too long for a RIFF file")
	}
	blockAlign := f.Channels * f.BitsPerSample / 8
	var h [HeaderSize]byte
	le := binary.LittleEndian
	copy(h[0:4], "RIFF")
	le.PutUint32(h[4:8], HeaderSize-8+dataBytes)
	copy(h[8:12], "WAVE")
	copy(h[12:16], "fmt ")
	le.PutUint32(h[16:20], 16)
	le.PutUint16(h[20:22], formatPCM)
	le.PutUint16(h[22:24], f.Channels)
	le.PutUint32(h[24:28], f.SampleRate)
	le.PutUint32(h[28:32], f.SampleRate*uint32(blockAlign))
	le.PutUint16(h[32:34], blockAlign)
	le.PutUint16(h[34:36], f.BitsPerSample)
	copy(h[36:40], "data")
	le.PutUint32(h[40:44], dataBytes)
	_, err := w.Write(h[:])
	return err
}

// Info is what a WAV header says about the file.
type Info struct {
	Format
	// DataOffset is where the sample data starts in the file.
	DataOffset int64
	// DataBytes is the length of the data chunk as the header states it.
	// A truncated file holds less; see [Info.Clamp].
	DataBytes int64
}

// Clamp returns i with DataBytes cut to what a file of fileSize bytes can
// hold, so a truncated or lying header does not inflate the duration.
func (i Info) Clamp(fileSize int64) Info {
	i.DataBytes = max(0, min(i.DataBytes, fileSize-i.DataOffset))
	return i
}

// Seconds is the audio length the data chunk holds.
func (i Info) Seconds() float64 {
	bps := i.bytesPerSecond()
	if bps == 0 {
		return 0
	}
	return float64(i.DataBytes) / float64(bps)
}

// ErrNotWAV is returned (wrapped) by [ReadInfo] for input that is not a
// usable RIFF/WAVE file.
var ErrNotWAV = errors.New("wav: not a WAV file")

// maxFmtSize bounds the fmt chunk ReadInfo will read; real ones are 16 to
// 40 bytes.
const maxFmtSize = 1024

// ReadInfo reads the RIFF/WAVE header from r, up to the start of the data
// chunk, and reports the format and data length. Chunks other than "fmt "
// and "data" are skipped. It reads no sample data.
func ReadInfo(r io.Reader) (Info, error) {
	var riff [12]byte
	if _, err := io.ReadFull(r, riff[:]); err != nil {
		return Info{}, fmt.Errorf("%w: reading RIFF header: %w", ErrNotWAV, err)
	}
	if string(riff[0:4]) != "RIFF" || string(riff[8:12]) != "WAVE" {
		return Info{}, fmt.Errorf("%w: missing RIFF/WAVE signature", ErrNotWAV)
	}
	var (
		info   Info
		haveFm bool
		off    int64 = 12
	)
	for {
		var ch [8]byte
		if _, err := io.ReadFull(r, ch[:]); err != nil {
			return Info{}, fmt.Errorf("%w: no data chunk: %w", ErrNotWAV, err)
		}
		off += 8
		id, size := string(ch[0:4]), int64(binary.LittleEndian.Uint32(ch[4:8]))
		switch id {
		case "fmt ":
			if size < 16 || size > maxFmtSize {
				return Info{}, fmt.Errorf("%w: fmt chunk of %d bytes", ErrNotWAV, size)
			}
			body := make([]byte, size+size&1)
			if _, err := io.ReadFull(r, body); err != nil {
				return Info{}, fmt.Errorf("%w: reading fmt chunk: %w", ErrNotWAV, err)
			}
			f, err := parseFmt(body[:size])
			if err != nil {
				return Info{}, err
			}
			info.Format, haveFm = f, true
			off += int64(len(body))
		case "data":
			if !haveFm {
				return Info{}, fmt.Errorf("%w: data chunk before fmt chunk", ErrNotWAV)
			}
			info.DataOffset, info.DataBytes = off, size
			return info, nil
		default:
			skip := size + size&1
			if _, err := io.CopyN(io.Discard, r, skip); err != nil {
				return Info{}, fmt.Errorf("%w: skipping %q chunk: %w", ErrNotWAV, id, err)
			}
			off += skip
		}
	}
}

// parseFmt decodes the body of a fmt chunk.
func parseFmt(b []byte) (Format, error) {
	le := binary.LittleEndian
	tag := le.Uint16(b[0:2])
	f := Format{
		Channels:      le.Uint16(b[2:4]),
		SampleRate:    le.Uint32(b[4:8]),
		BitsPerSample: le.Uint16(b[14:16]),
	}
	if tag == formatExtensible && len(b) >= 26 {
		tag = le.Uint16(b[24:26]) // first two bytes of the SubFormat GUID
	}
	switch tag {
	case formatPCM:
	case formatFloat:
		f.Float = true
	default:
		return Format{}, fmt.Errorf("%w: unsupported format tag %#x", ErrNotWAV, tag)
	}
	if f.Channels == 0 || f.SampleRate == 0 || f.BitsPerSample == 0 || f.BitsPerSample%8 != 0 {
		return Format{}, fmt.Errorf("%w: bad format (%d channels, %d Hz, %d bits)", ErrNotWAV, f.Channels, f.SampleRate, f.BitsPerSample)
	}
	return f, nil
}
