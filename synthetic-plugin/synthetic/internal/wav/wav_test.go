package wav

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"testing"
)

func TestWriteHeaderGolden(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteHeader(&buf, Format{SampleRate: 16000, Channels: 1, BitsPerSample: 16}, 32000); err != nil {
		t.Fatal(err)
	}
	// RIFF, 32036, WAVE, "fmt ", 16, PCM, mono, 16000 Hz, 32000 B/s,
	// align 2, 16 bits, data, 32000.
	const want = "52494646" + "247d0000" + "57415645" + "666d7420" + "10000000" +
		"0100" + "0100" + "803e0000" + "007d0000" + "0200" + "1000" + "64617461" + "007d0000"
	if got := hex.EncodeToString(buf.Bytes()); got != want {
		t.Errorf("header =\n%s\nwant\n%s", got, want)
	}
}

func TestWriteHeaderRejectsBadFormats(t *testing.T) {
	for _, f := range []Format{
		{},
		{SampleRate: 16000, Channels: 1, BitsPerSample: 12},
		{SampleRate: 16000, Channels: 0, BitsPerSample: 16},
		{SampleRate: 16000, Channels: 1, BitsPerSample: 32, Float: true},
	} {
		if err := WriteHeader(&bytes.Buffer{}, f, 0); err == nil {
			t.Errorf("WriteHeader(%+v) succeeded, want an error", f)
		}
	}
}

func TestReadInfoRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	f := Format{SampleRate: 16000, Channels: 1, BitsPerSample: 16}
	if err := WriteHeader(&buf, f, 48000); err != nil {
		t.Fatal(err)
	}
	got, err := ReadInfo(&buf)
	if err != nil {
		t.Fatal(err)
	}
	want := Info{Format: f, DataOffset: HeaderSize, DataBytes: 48000}
	if got != want {
		t.Errorf("ReadInfo = %+v, want %+v", got, want)
	}
	if s := got.Seconds(); s != 1.5 {
		t.Errorf("Seconds = %v, want 1.5", s)
	}
}

// chunk builds one RIFF chunk, padded to even length.
func chunk(id string, body []byte) []byte {
	b := append([]byte(id), 0, 0, 0, 0)
	binary.LittleEndian.PutUint32(b[4:], uint32(len(body)))
	b = append(b, body...)
	if len(body)%2 == 1 {
		b = append(b, 0)
	}
	return b
}

func fmtBody(tag, channels uint16, rate uint32, bits uint16) []byte {
	b := make([]byte, 16)
	le := binary.LittleEndian
	le.PutUint16(b[0:], tag)
	le.PutUint16(b[2:], channels)
	le.PutUint32(b[4:], rate)
	le.PutUint32(b[8:], rate*uint32(channels)*uint32(bits)/8)
	le.PutUint16(b[12:], channels*bits/8)
	le.PutUint16(b[14:], bits)
	return b
}

func riff(chunks ...[]byte) []byte {
	b := []byte("RIFF\x00\x00\x00\x00WAVE")
	for _, c := range chunks {
		b = append(b, c...)
	}
	binary.LittleEndian.PutUint32(b[4:], uint32(len(b)-8))
	return b
}

func TestReadInfoFormats(t *testing.T) {
	ext := fmtBody(formatExtensible, 2, 48000, 32)
	ext = append(ext, 22, 0, 32, 0, 3, 0, 0, 0) // cbSize, valid bits, channel mask
	ext = append(ext, 3, 0)                     // SubFormat GUID starts with the float tag
	ext = append(ext, make([]byte, 14)...)

	tests := []struct {
		name    string
		file    []byte
		want    Format
		seconds float64
		offset  int64
	}{
		{
			name:    "list chunk before fmt, odd sized",
			file:    riff(chunk("LIST", []byte("abc")), chunk("fmt ", fmtBody(formatPCM, 2, 8000, 16)), chunk("data", make([]byte, 64000))),
			want:    Format{SampleRate: 8000, Channels: 2, BitsPerSample: 16},
			seconds: 2,
			offset:  12 + 12 + 24 + 8,
		},
		{
			name:    "float",
			file:    riff(chunk("fmt ", fmtBody(formatFloat, 1, 16000, 32)), chunk("data", make([]byte, 32000))),
			want:    Format{SampleRate: 16000, Channels: 1, BitsPerSample: 32, Float: true},
			seconds: 0.5,
			offset:  12 + 24 + 8,
		},
		{
			name:    "extensible float",
			file:    riff(chunk("fmt ", ext), chunk("data", make([]byte, 384000))),
			want:    Format{SampleRate: 48000, Channels: 2, BitsPerSample: 32, Float: true},
			seconds: 1,
			offset:  12 + 8 + 40 + 8,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadInfo(bytes.NewReader(tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if got.Format != tt.want {
				t.Errorf("format = %+v, want %+v", got.Format, tt.want)
			}
			if got.DataOffset != tt.offset {
				t.Errorf("data offset = %d, want %d", got.DataOffset, tt.offset)
			}
			if s := got.Clamp(int64(len(tt.file))).Seconds(); s != tt.seconds {
				t.Errorf("seconds = %v, want %v", s, tt.seconds)
			}
		})
	}
}

func TestReadInfoRejectsMalformed(t *testing.T) {
	good := chunk("fmt ", fmtBody(formatPCM, 1, 16000, 16))
	tests := []struct {
		name string
		file []byte
	}{
		{"empty", nil},
		{"short", []byte("RIFF")},
		{"not riff", []byte("OggS\x00\x00\x00\x00WAVEfmt ")},
		{"riff but not wave", riff()[:8]},
		{"avi", append([]byte("RIFF\x04\x00\x00\x00AVI "), good...)},
		{"no chunks", riff()},
		{"no data chunk", riff(good)},
		{"data before fmt", riff(chunk("data", []byte{0, 0}), good)},
		{"fmt too short", riff(chunk("fmt ", []byte{1, 0, 1, 0}), chunk("data", nil))},
		{"fmt huge", riff(append([]byte("fmt \xff\xff\xff\x7f"), make([]byte, 16)...))},
		{"fmt truncated", riff([]byte("fmt \x10\x00\x00\x00\x01\x00"))},
		{"mp3 tag", riff(chunk("fmt ", fmtBody(0x55, 1, 16000, 16)), chunk("data", nil))},
		{"zero channels", riff(chunk("fmt ", fmtBody(formatPCM, 0, 16000, 16)), chunk("data", nil))},
		{"zero rate", riff(chunk("fmt ", fmtBody(formatPCM, 1, 0, 16)), chunk("data", nil))},
		{"12-bit", riff(chunk("fmt ", fmtBody(formatPCM, 1, 16000, 12)), chunk("data", nil))},
		{"skipped chunk runs off the end", riff(append([]byte("junk\x00\x00\x01\x00"), 1, 2, 3))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := ReadInfo(bytes.NewReader(tt.file))
			if !errors.Is(err, ErrNotWAV) {
				t.Fatalf("ReadInfo = %+v, %v; want an error wrapping ErrNotWAV", info, err)
			}
		})
	}
}

func TestClamp(t *testing.T) {
	i := Info{Format: Format{SampleRate: 16000, Channels: 1, BitsPerSample: 16}, DataOffset: 44, DataBytes: 1 << 31}
	tests := []struct {
		size int64
		want int64
	}{
		{44 + 32000, 32000},
		{44, 0},
		{10, 0},
		{1 << 40, 1 << 31},
	}
	for _, tt := range tests {
		if got := i.Clamp(tt.size).DataBytes; got != tt.want {
			t.Errorf("Clamp(%d).DataBytes = %d, want %d", tt.size, got, tt.want)
		}
	}
}
