package sdmodel

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"strings"
	"testing"

	"github.com/stokerhq/stoker/llamacpp-plugin/gguf"
)

// countingHash is a SHA-256 that also counts the bytes written to it.
type countingHash struct {
	h interface {
		io.Writer
		Sum([]byte) []byte
	}
	n int64
}

func newCountingHash() *countingHash { return &countingHash{h: sha256.New()} }

func (c *countingHash) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return c.h.Write(p)
}

func (c *countingHash) sum() string { return hex.EncodeToString(c.h.Sum(nil)) }

// TestTinySDDeterministic writes the model twice into hashes (never to disk
// or memory) and checks that both match the pinned TinySDSHA256 and
// TinySDSize, which callers trust instead of generating the model. The
// first write also goes through the GGUF reader, which must find the
// layout TinySD describes.
func TestTinySDDeterministic(t *testing.T) {
	first := newCountingHash()
	pr, pw := io.Pipe()
	type result struct {
		h   *gguf.Header
		err error
	}
	read := make(chan result, 1)
	go func() {
		h, err := gguf.ReadHeader(pr)
		if err == nil {
			_, err = io.Copy(io.Discard, pr) // drain the tensor data
		}
		pr.CloseWithError(err)
		read <- result{h, err}
	}()
	werr := WriteTinySD(io.MultiWriter(first, pw))
	pw.CloseWithError(werr)
	r := <-read
	if werr != nil {
		t.Fatalf("WriteTinySD: %v", werr)
	}
	if r.err != nil {
		t.Fatalf("ReadHeader: %v", r.err)
	}

	second := newCountingHash()
	if err := WriteTinySD(second); err != nil {
		t.Fatalf("WriteTinySD: %v", err)
	}
	if first.sum() != second.sum() || first.n != second.n {
		t.Fatalf("two writes differ: %s (%d bytes) and %s (%d bytes)", first.sum(), first.n, second.sum(), second.n)
	}
	if got := first.sum(); got != TinySDSHA256 || first.n != TinySDSize {
		t.Errorf("got sha256 %s (%d bytes), want TinySDSHA256 %s (%d bytes); update both constants, on purpose, when the generator changes", got, first.n, TinySDSHA256, TinySDSize)
	}

	want := TinySD().Tensors
	if len(r.h.Tensors) != len(want) {
		t.Fatalf("file has %d tensors, want %d", len(r.h.Tensors), len(want))
	}
	for i, got := range r.h.Tensors {
		w := want[i]
		if got.Name != w.Name || got.Type != w.Type || !equalDims(got.Dims, w.Dims) {
			t.Errorf("tensor %d: got %s %v type %d, want %s %v type %d", i, got.Name, got.Dims, got.Type, w.Name, w.Dims, w.Type)
		}
	}
}

func equalDims(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestTinySDLayout checks the tensor table against what stable-diffusion.cpp
// needs to load the file as SDXS-512-DS: the tensor count of that layout,
// the names and shapes its version detection and block numbering read, and
// types its layers accept.
func TestTinySDLayout(t *testing.T) {
	ts := TinySD().Tensors
	if len(ts) != 610 { // 196 CLIP + 280 UNet + 134 TAESD, as sd.cpp builds SDXS-512-DS
		t.Errorf("got %d tensors, want 610", len(ts))
	}
	byName := map[string]gguf.Tensor{}
	params := map[string]uint64{}
	for _, tt := range ts {
		if _, dup := byName[tt.Name]; dup {
			t.Errorf("tensor %s appears twice", tt.Name)
		}
		byName[tt.Name] = tt
		params[strings.SplitN(tt.Name, ".", 2)[0]] += tt.Elements()

		switch {
		case tt.Type == gguf.TensorQ8_0 && (len(tt.Dims) != 2 || tt.Dims[0]%gguf.Q8_0Block != 0):
			t.Errorf("%s: Q8_0 with dims %v, want a matrix of whole blocks", tt.Name, tt.Dims)
		case len(tt.Dims) == 4 && tt.Type != gguf.TensorF16:
			t.Errorf("%s: convolution kernel of type %d, want F16", tt.Name, tt.Type)
		case len(tt.Dims) == 1 && tt.Type != gguf.TensorF32:
			t.Errorf("%s: vector of type %d, want F32", tt.Name, tt.Type)
		}
	}
	const clip = "cond_stage_model.transformer.text_model."
	const unet = "model.diffusion_model."
	const tae = "first_stage_model."
	present := []struct {
		name string
		dims []uint64
		typ  gguf.TensorType
	}{
		// A 768-wide token embedding makes sd.cpp take the SD 1.x family.
		{clip + "embeddings.token_embedding.weight", []uint64{768, 49408}, gguf.TensorF16},
		{clip + "embeddings.position_embedding.weight", []uint64{768, 77}, gguf.TensorF32},
		{clip + "encoder.layers.11.mlp.fc2.weight", []uint64{3072, 768}, gguf.TensorQ8_0},
		{clip + "final_layer_norm.bias", []uint64{768}, gguf.TensorF32},
		// model_channels and the context width are read from these.
		{unet + "input_blocks.0.0.weight", []uint64{3, 3, 4, unetChannels}, gguf.TensorF16},
		{unet + "time_embed.0.weight", []uint64{unetChannels, 4 * unetChannels}, gguf.TensorF16},
		{unet + "input_blocks.7.1.transformer_blocks.0.attn2.to_k.weight", []uint64{768, 4 * unetChannels}, gguf.TensorQ8_0},
		{unet + "input_blocks.3.0.op.weight", []uint64{3, 3, unetChannels, unetChannels}, gguf.TensorF16},
		{unet + "output_blocks.0.0.skip_connection.weight", []uint64{1, 1, 8 * unetChannels, 4 * unetChannels}, gguf.TensorF16},
		{unet + "output_blocks.2.1.conv.weight", []uint64{3, 3, 4 * unetChannels, 4 * unetChannels}, gguf.TensorF16},
		{unet + "output_blocks.5.2.conv.weight", []uint64{3, 3, 2 * unetChannels, 2 * unetChannels}, gguf.TensorF16},
		{unet + "output_blocks.7.0.out_layers.3.weight", []uint64{3, 3, unetChannels, unetChannels}, gguf.TensorF16},
		{unet + "out.2.weight", []uint64{3, 3, unetChannels, 4}, gguf.TensorF16},
		{tae + "decoder.layers.0.weight", []uint64{3, 3, 4, 64}, gguf.TensorF16},
		{tae + "decoder.layers.16.weight", []uint64{3, 3, 64, 64}, gguf.TensorF16},
		{tae + "decoder.layers.18.weight", []uint64{3, 3, 64, 3}, gguf.TensorF16},
		{tae + "encoder.layers.14.bias", []uint64{4}, gguf.TensorF32},
	}
	for _, p := range present {
		got, ok := byName[p.name]
		if !ok {
			t.Errorf("%s missing", p.name)
			continue
		}
		if !equalDims(got.Dims, p.dims) || got.Type != p.typ {
			t.Errorf("%s: got %v type %d, want %v type %d", p.name, got.Dims, got.Type, p.dims, p.typ)
		}
	}
	// Their absence is what makes sd.cpp take SDXS-512-DS over SD 1.x and
	// its other tiny UNet; and the no-bias TAESD convolutions have none.
	for _, name := range []string{
		unet + "middle_block.1.norm.weight",
		unet + "output_blocks.7.1.norm.weight",
		unet + "input_blocks.2.0.in_layers.0.weight",
		tae + "decoder.layers.16.bias",
	} {
		if _, ok := byName[name]; ok {
			t.Errorf("%s present, want it absent", name)
		}
	}
	// Sizes: CLIP ViT-L/14 exactly as sd.cpp builds it, TAESD's 2.4M, and
	// the narrow UNet.
	for _, w := range []struct {
		prefix string
		want   uint64
	}{
		{"cond_stage_model", 123_060_480},
		{"model", 14_079_172},
		{"first_stage_model", 2_445_063},
	} {
		if got := params[w.prefix]; got != w.want {
			t.Errorf("%s: %d parameters, want %d", w.prefix, got, w.want)
		}
	}
}

func BenchmarkWriteTinySD(b *testing.B) {
	for b.Loop() {
		if err := WriteTinySD(io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}
