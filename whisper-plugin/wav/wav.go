// Package wav decodes RIFF/WAVE audio into mono float32 samples and
// resamples them, for the whisper plugin, which feeds whisper.cpp 16 kHz mono
// PCM. It is pure Go and may be imported by anything in this module (the
// supervisor's dev mode uses [Encode] to make demo clips).
//
// Supported encodings: integer PCM of 8 (unsigned), 16, 24 and 32 bits,
// IEEE float of 32 and 64 bits, in plain WAVE_FORMAT_PCM/IEEE_FLOAT fmt
// chunks and in WAVE_FORMAT_EXTENSIBLE ones; any channel count up to
// [MaxChannels] and any sample rate from [MinSampleRate] to [MaxSampleRate].
// Everything else (A-law, mu-law, ADPCM, RF64, other containers) is refused
// with an error wrapping [ErrFormat].
//
// Sizes read from the file are never trusted for allocation: every chunk is
// bounded by the real size of the input, so a header claiming 2 GiB in a
// 100-byte file fails before anything large is allocated.
package wav

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
)

// ErrFormat is wrapped by every error about the content of the input: not a
// WAV file, truncated, an unsupported encoding, no samples. Callers map it to
// a bad-input failure; any other error is an I/O error.
var ErrFormat = errors.New("wav: bad or unsupported audio")

// Limits on what a file may hold.
const (
	MaxChannels   = 64
	MinSampleRate = 1000
	MaxSampleRate = 768000
	// MaxFrames bounds the decoded length (2^28 frames: 1 GiB of float32
	// samples; 4.6 hours at 16 kHz, 1.5 hours at 48 kHz).
	MaxFrames = 1 << 28
)

// Encoding is the sample encoding of a WAV stream.
type Encoding uint8

// The supported encodings.
const (
	PCM   Encoding = iota + 1 // signed integer (unsigned for 8 bits)
	Float                     // IEEE 754
)

func (e Encoding) String() string {
	switch e {
	case PCM:
		return "pcm"
	case Float:
		return "float"
	}
	return fmt.Sprintf("encoding(%d)", uint8(e))
}

// Format describes a WAV stream.
type Format struct {
	Encoding      Encoding
	Channels      int
	SampleRate    int // frames per second
	BitsPerSample int // container bits: 8, 16, 24, 32 (PCM) or 32, 64 (Float)
	// Extensible selects the WAVE_FORMAT_EXTENSIBLE fmt chunk when encoding.
	Extensible bool
}

func (f Format) bytesPerSample() int { return f.BitsPerSample / 8 }
func (f Format) blockAlign() int     { return f.Channels * f.bytesPerSample() }

func (f Format) validate() error {
	switch {
	case f.Channels < 1 || f.Channels > MaxChannels:
		return fmt.Errorf("%w: %d channels (want 1..%d)", ErrFormat, f.Channels, MaxChannels)
	case f.SampleRate < MinSampleRate || f.SampleRate > MaxSampleRate:
		return fmt.Errorf("%w: sample rate %d Hz (want %d..%d)", ErrFormat, f.SampleRate, MinSampleRate, MaxSampleRate)
	}
	switch f.Encoding {
	case PCM:
		switch f.BitsPerSample {
		case 8, 16, 24, 32:
			return nil
		}
	case Float:
		switch f.BitsPerSample {
		case 32, 64:
			return nil
		}
	default:
		return fmt.Errorf("%w: unsupported encoding", ErrFormat)
	}
	return fmt.Errorf("%w: %d-bit %s samples", ErrFormat, f.BitsPerSample, f.Encoding)
}

// Audio is decoded audio: mono samples in [-1, 1] at Format.SampleRate.
// Format describes the source stream.
type Audio struct {
	Format  Format
	Samples []float32
}

// Duration returns the audio length in seconds.
func (a *Audio) Duration() float64 {
	return float64(len(a.Samples)) / float64(a.Format.SampleRate)
}

// WAVE format tags.
const (
	tagPCM        = 0x0001
	tagFloat      = 0x0003
	tagExtensible = 0xFFFE
)

// subFormatTail is the GUID tail shared by the KSDATAFORMAT_SUBTYPE_* ids;
// the first two bytes of a sub-format GUID hold the format tag.
var subFormatTail = [14]byte{0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71}

// ReadFile decodes the WAV file at path to mono. See [Decode].
func ReadFile(path string) (*Audio, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening audio: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("opening audio: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrFormat, path)
	}
	return Decode(f, st.Size())
}

// Decode reads a whole WAV stream of size bytes from r and returns its
// samples downmixed to mono (the mean of the channels). size bounds every
// length the header claims. A data chunk size of 0xFFFFFFFF (written by
// streaming encoders that could not seek back) means "to the end of the
// input"; any other data chunk that claims more than the input holds is an
// error. A trailing partial frame is dropped.
func Decode(r io.Reader, size int64) (*Audio, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	d := decoder{r: br, left: size}
	return d.decode()
}

type decoder struct {
	r    *bufio.Reader
	left int64 // bytes of the input not yet consumed
}

func (d *decoder) read(p []byte) error {
	if int64(len(p)) > d.left {
		return fmt.Errorf("%w: truncated (need %d bytes, %d left)", ErrFormat, len(p), d.left)
	}
	if _, err := io.ReadFull(d.r, p); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: truncated", ErrFormat)
		}
		return fmt.Errorf("reading audio: %w", err)
	}
	d.left -= int64(len(p))
	return nil
}

func (d *decoder) skip(n int64) error {
	if n > d.left {
		return fmt.Errorf("%w: chunk of %d bytes runs past the end (%d left)", ErrFormat, n, d.left)
	}
	if _, err := io.CopyN(io.Discard, d.r, n); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: truncated", ErrFormat)
		}
		return fmt.Errorf("reading audio: %w", err)
	}
	d.left -= n
	return nil
}

func (d *decoder) decode() (*Audio, error) {
	var hdr [12]byte
	if err := d.read(hdr[:]); err != nil {
		if d.left == 0 {
			return nil, fmt.Errorf("%w: too short for a RIFF header", ErrFormat)
		}
		return nil, err
	}
	switch string(hdr[0:4]) {
	case "RIFF":
	case "RF64", "RIFX":
		return nil, fmt.Errorf("%w: %s container not supported", ErrFormat, hdr[0:4])
	default:
		return nil, fmt.Errorf("%w: not a RIFF file (magic %q)", ErrFormat, hdr[0:4])
	}
	if string(hdr[8:12]) != "WAVE" {
		return nil, fmt.Errorf("%w: RIFF form %q, not WAVE", ErrFormat, hdr[8:12])
	}
	// The RIFF size is ignored: writers get it wrong, and d.left is the
	// real bound.
	var f *Format
	for {
		var ch [8]byte
		if d.left == 0 {
			return nil, fmt.Errorf("%w: no data chunk", ErrFormat)
		}
		if err := d.read(ch[:]); err != nil {
			return nil, err
		}
		id := string(ch[0:4])
		n := int64(binary.LittleEndian.Uint32(ch[4:8]))
		switch id {
		case "fmt ":
			if f != nil {
				return nil, fmt.Errorf("%w: two fmt chunks", ErrFormat)
			}
			var err error
			if f, err = d.readFmt(n); err != nil {
				return nil, err
			}
		case "data":
			if f == nil {
				return nil, fmt.Errorf("%w: data chunk before fmt chunk", ErrFormat)
			}
			if n == 0xFFFFFFFF {
				n = d.left
			}
			if n > d.left {
				return nil, fmt.Errorf("%w: data chunk claims %d bytes, only %d present", ErrFormat, n, d.left)
			}
			return d.readData(*f, n)
		default:
			if err := d.skip(n); err != nil {
				return nil, err
			}
			if n&1 == 1 && d.left > 0 { // chunks are padded to even sizes
				if err := d.skip(1); err != nil {
					return nil, err
				}
			}
		}
	}
}

func (d *decoder) readFmt(n int64) (*Format, error) {
	if n < 16 || n > 1024 {
		return nil, fmt.Errorf("%w: fmt chunk of %d bytes", ErrFormat, n)
	}
	b := make([]byte, n+n&1)
	if err := d.read(b[:n]); err != nil {
		return nil, err
	}
	if n&1 == 1 && d.left > 0 {
		if err := d.read(b[n:]); err != nil {
			return nil, err
		}
	}
	le := binary.LittleEndian
	tag := le.Uint16(b[0:2])
	f := Format{
		Channels:      int(le.Uint16(b[2:4])),
		SampleRate:    int(le.Uint32(b[4:8])),
		BitsPerSample: int(le.Uint16(b[14:16])),
	}
	align := int(le.Uint16(b[12:14]))
	if tag == tagExtensible {
		if n < 40 {
			return nil, fmt.Errorf("%w: extensible fmt chunk of %d bytes", ErrFormat, n)
		}
		if [14]byte(b[26:40]) != subFormatTail {
			return nil, fmt.Errorf("%w: unknown extensible sub-format", ErrFormat)
		}
		tag = le.Uint16(b[24:26])
		f.Extensible = true
	}
	switch tag {
	case tagPCM:
		f.Encoding = PCM
	case tagFloat:
		f.Encoding = Float
	default:
		return nil, fmt.Errorf("%w: format tag 0x%04x (only PCM and IEEE float)", ErrFormat, tag)
	}
	if err := f.validate(); err != nil {
		return nil, err
	}
	if align != f.blockAlign() {
		return nil, fmt.Errorf("%w: block align %d, want %d for %d channels of %d bits",
			ErrFormat, align, f.blockAlign(), f.Channels, f.BitsPerSample)
	}
	return &f, nil
}

// readData decodes n bytes of interleaved frames, downmixing as it goes so
// that the raw data is never held whole.
func (d *decoder) readData(f Format, n int64) (*Audio, error) {
	align := int64(f.blockAlign())
	frames := n / align
	if frames == 0 {
		return nil, fmt.Errorf("%w: no audio samples", ErrFormat)
	}
	if frames > MaxFrames {
		return nil, fmt.Errorf("%w: %d frames is longer than the limit of %d", ErrFormat, frames, MaxFrames)
	}
	out := make([]float32, 0, frames)
	conv := sampleReader(f)
	bps := f.bytesPerSample()
	scale := 1 / float64(f.Channels)
	buf := make([]byte, 0, (64<<10)/align*align+align)
	for left := frames; left > 0; {
		k := min(left, int64(cap(buf))/align)
		buf = buf[:k*align]
		if err := d.read(buf); err != nil {
			return nil, err
		}
		for off := 0; off < len(buf); off += int(align) {
			var sum float64
			for c := 0; c < f.Channels; c++ {
				sum += conv(buf[off+c*bps:])
			}
			v := sum * scale
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("%w: non-finite sample at frame %d", ErrFormat, len(out))
			}
			out = append(out, float32(v))
		}
		left -= k
	}
	return &Audio{Format: f, Samples: out}, nil
}

// sampleReader returns the function converting one encoded sample to
// [-1, 1]. The integer scales are those of miniaudio and libsndfile
// (divide by 2^(bits-1)), so 16-bit input decodes to the same floats as in
// whisper.cpp's own programs.
func sampleReader(f Format) func([]byte) float64 {
	le := binary.LittleEndian
	switch {
	case f.Encoding == Float && f.BitsPerSample == 32:
		return func(b []byte) float64 { return float64(math.Float32frombits(le.Uint32(b))) }
	case f.Encoding == Float:
		return func(b []byte) float64 { return math.Float64frombits(le.Uint64(b)) }
	case f.BitsPerSample == 8:
		return func(b []byte) float64 { return (float64(b[0]) - 128) / 128 }
	case f.BitsPerSample == 16:
		return func(b []byte) float64 { return float64(int16(le.Uint16(b))) / (1 << 15) }
	case f.BitsPerSample == 24:
		return func(b []byte) float64 {
			v := int32(uint32(b[0])<<8|uint32(b[1])<<16|uint32(b[2])<<24) >> 8
			return float64(v) / (1 << 23)
		}
	default:
		return func(b []byte) float64 { return float64(int32(le.Uint32(b))) / (1 << 31) }
	}
}
