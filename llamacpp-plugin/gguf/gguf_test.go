package gguf

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"testing"
)

func tinyBytes(t testing.TB) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := WriteTinyLlama(&b); err != nil {
		t.Fatalf("WriteTinyLlama: %v", err)
	}
	return b.Bytes()
}

func TestTinyLlamaDeterministic(t *testing.T) {
	a, b := tinyBytes(t), tinyBytes(t)
	if !bytes.Equal(a, b) {
		t.Fatal("two WriteTinyLlama calls differ")
	}
	if n := len(a); n < 100<<10 || n > 1<<20 {
		t.Errorf("size %d bytes, want a few hundred KB", n)
	}
	// The golden digest pins the bytes across machines and Go releases: the
	// -dev catalog and the tests rely on every node making the same model.
	sum := sha256.Sum256(a)
	if got, want := hex.EncodeToString(sum[:]), tinyLlamaSHA256; got != want {
		t.Errorf("sha256 %s, want %s (update tinyLlamaSHA256 only on purpose)", got, want)
	}
}

const tinyLlamaSHA256 = "595b0bf67d2ae405f74f6ca930a402550add2eb231c51ba5b0573c8a5cf274e0"

func TestRoundTrip(t *testing.T) {
	h, err := ReadHeader(bytes.NewReader(tinyBytes(t)))
	if err != nil {
		t.Fatalf("ReadHeader: %v", err)
	}
	want := TinyLlama()
	if h.Version != Version {
		t.Errorf("version %d, want %d", h.Version, Version)
	}
	if got := h.Architecture(); got != "llama" {
		t.Errorf("architecture %q, want llama", got)
	}
	if got := h.String("tokenizer.chat_template"); got != TinyLlamaChatTemplate {
		t.Errorf("chat template %q, want %q", got, TinyLlamaChatTemplate)
	}
	if got, ok := h.Uint("llama.context_length"); !ok || got != TinyContextLength {
		t.Errorf("context_length %d (%v), want %d", got, ok, TinyContextLength)
	}
	toks, _ := h.Get("tokenizer.ggml.tokens")
	if got, ok := toks.([]string); !ok || len(got) != TinyVocab || got[TinyImEnd] != "<|im_end|>" {
		t.Errorf("tokens %T len %d, want []string of %d ending in <|im_end|>", toks, len(got), TinyVocab)
	}
	if len(h.KV) != len(want.KV) {
		t.Errorf("%d metadata entries, want %d", len(h.KV), len(want.KV))
	}
	if len(h.Tensors) != len(want.Tensors) {
		t.Fatalf("%d tensors, want %d", len(h.Tensors), len(want.Tensors))
	}
	var off uint64
	for i, got := range h.Tensors {
		w := want.Tensors[i]
		if got.Name != w.Name || got.Type != w.Type || got.Elements() != w.Elements() {
			t.Errorf("tensor %d: got %s %v type %d, want %s %v type %d", i, got.Name, got.Dims, got.Type, w.Name, w.Dims, w.Type)
		}
		if got.Offset != off || got.Offset%DefaultAlignment != 0 {
			t.Errorf("tensor %s offset %d, want %d (aligned)", got.Name, got.Offset, off)
		}
		off = alignUp(off+uint64(len(w.Data)), DefaultAlignment)
	}
}

func TestWriteRejects(t *testing.T) {
	tests := []struct {
		name string
		f    File
	}{
		{"unsupported value", File{KV: []KV{{"x", struct{}{}}}}},
		{"bad alignment", File{KV: []KV{{"general.alignment", uint32(3)}}}},
		{"short data", File{Tensors: []Tensor{{Name: "t", Dims: []uint64{4}, Type: TensorF32, Data: make([]byte, 15)}}}},
		{"quantized type", File{Tensors: []Tensor{{Name: "t", Dims: []uint64{32}, Type: 2, Data: make([]byte, 18)}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.f.Write(io.Discard); err == nil {
				t.Fatal("got nil error, want one")
			}
		})
	}
}

// le builds little-endian byte strings for hostile headers.
func le(parts ...any) []byte {
	var b bytes.Buffer
	for _, p := range parts {
		switch p := p.(type) {
		case string:
			b.WriteString(p)
		default:
			_ = binary.Write(&b, binary.LittleEndian, p)
		}
	}
	return b.Bytes()
}

func TestReadHostile(t *testing.T) {
	good := tinyBytes(t)
	hdr := func(nt, nkv uint64) []byte { return le("GGUF", uint32(3), nt, nkv) }
	tests := []struct {
		name    string
		in      []byte
		notGGUF bool
	}{
		{"empty", nil, true},
		{"wrong magic", []byte("GGML\x03\x00\x00\x00"), true},
		{"text file", []byte("hello, I am not a model\n"), true},
		{"bad version", le("GGUF", uint32(99), uint64(0), uint64(0)), false},
		{"truncated header", good[:10], false},
		{"truncated metadata", good[:2000], false},
		{"huge tensor count", hdr(1<<40, 0), false},
		{"huge kv count", hdr(0, 1<<40), false},
		{"huge key length", append(hdr(0, 1), le(uint64(1<<62))...), false},
		{"unknown value type", append(hdr(0, 1), le(uint64(1), "k", uint32(77))...), false},
		{"huge array", append(hdr(0, 1), le(uint64(1), "k", uint32(TypeArray), uint32(TypeUint8), uint64(1<<40))...), false},
		{"bad bool", append(hdr(0, 1), le(uint64(1), "k", uint32(TypeBool), uint8(7))...), false},
		{"tensor with 9 dims", append(hdr(1, 0), le(uint64(1), "t", uint32(9))...), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := ReadHeader(bytes.NewReader(tt.in))
			if err == nil {
				t.Fatalf("got header with %d keys, want an error", len(h.KV))
			}
			if got := errors.Is(err, ErrNotGGUF); got != tt.notGGUF {
				t.Errorf("errors.Is(%v, ErrNotGGUF) = %v, want %v", err, got, tt.notGGUF)
			}
		})
	}
}

func BenchmarkWriteTinyLlama(b *testing.B) {
	for b.Loop() {
		if err := WriteTinyLlama(io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}
