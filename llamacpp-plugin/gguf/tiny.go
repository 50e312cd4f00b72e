package gguf

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
)

// TinyLlamaChatTemplate is the chat template written into the tiny model: a
// ChatML template, which llama.cpp's template API recognises by its markers.
const TinyLlamaChatTemplate = "{% for message in messages %}" +
	"{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}" +
	"{% endfor %}" +
	"{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"

// TinyLlama hyper-parameters.
const (
	TinyContextLength = 1024 // trained context (llama.context_length)
	tinyEmbd          = 64
	tinyLayers        = 2
	tinyHeads         = 4
	tinyHeadsKV       = 2 // grouped-query attention, as in current models
	tinyFF            = 128
)

// Token ids of the tiny model's vocabulary: three SentencePiece specials,
// the 256 byte tokens <0x00>..<0xFF>, "▁" (the SentencePiece space), and the
// two ChatML markers as control tokens.
const (
	TinyUnk     = 0
	TinyBOS     = 1
	TinyEOS     = 2
	tinyByte0   = 3
	tinySpace   = tinyByte0 + 256
	TinyImStart = tinySpace + 1
	TinyImEnd   = tinySpace + 2
	TinyVocab   = TinyImEnd + 1
)

// llama.cpp token types (llama_token_type).
const (
	tokNormal  int32 = 1
	tokUnknown int32 = 2
	tokControl int32 = 3
	tokByte    int32 = 6
)

// TinyLlama returns the tiny test model as a File: a 2-layer llama-architecture
// transformer (n_embd 64, 4 heads, 2 KV heads, FFN 128, F32 weights,
// trained context TinyContextLength) with a byte-level SentencePiece
// vocabulary of TinyVocab tokens and a ChatML chat template. Weights are
// pseudo-random from a fixed seed, so the file is the same on every call and
// every machine (about 470 KB). It generates gibberish, deterministically.
func TinyLlama() *File {
	tokens := make([]string, TinyVocab)
	scores := make([]float32, TinyVocab)
	types := make([]int32, TinyVocab)
	tokens[TinyUnk], types[TinyUnk] = "<unk>", tokUnknown
	tokens[TinyBOS], types[TinyBOS] = "<s>", tokControl
	tokens[TinyEOS], types[TinyEOS] = "</s>", tokControl
	for b := 0; b < 256; b++ {
		tokens[tinyByte0+b], types[tinyByte0+b] = fmt.Sprintf("<0x%02X>", b), tokByte
	}
	tokens[tinySpace], types[tinySpace], scores[tinySpace] = "\u2581", tokNormal, -1
	tokens[TinyImStart], types[TinyImStart] = "<|im_start|>", tokControl
	tokens[TinyImEnd], types[TinyImEnd] = "<|im_end|>", tokControl

	f := &File{KV: []KV{
		{"general.architecture", "llama"},
		{"general.name", "stoker tiny-llama"},
		{"general.alignment", uint32(DefaultAlignment)},
		{"llama.context_length", uint32(TinyContextLength)},
		{"llama.embedding_length", uint32(tinyEmbd)},
		{"llama.block_count", uint32(tinyLayers)},
		{"llama.feed_forward_length", uint32(tinyFF)},
		{"llama.attention.head_count", uint32(tinyHeads)},
		{"llama.attention.head_count_kv", uint32(tinyHeadsKV)},
		{"llama.rope.dimension_count", uint32(tinyEmbd / tinyHeads)},
		{"llama.rope.freq_base", float32(10000)},
		{"llama.attention.layer_norm_rms_epsilon", float32(1e-5)},
		{"llama.vocab_size", uint32(TinyVocab)},
		{"tokenizer.ggml.model", "llama"},
		{"tokenizer.ggml.tokens", tokens},
		{"tokenizer.ggml.scores", scores},
		{"tokenizer.ggml.token_type", types},
		{"tokenizer.ggml.bos_token_id", uint32(TinyBOS)},
		{"tokenizer.ggml.eos_token_id", uint32(TinyImEnd)},
		{"tokenizer.ggml.unknown_token_id", uint32(TinyUnk)},
		{"tokenizer.ggml.add_bos_token", true},
		{"tokenizer.ggml.add_eos_token", false},
		{"tokenizer.chat_template", TinyLlamaChatTemplate},
	}}

	rng := splitmix(0x5700_4E11_A3A0)
	kvDim := uint64(tinyEmbd / tinyHeads * tinyHeadsKV)
	// Large-ish weights keep the logits well separated, so greedy decoding
	// is not decided by float rounding noise between two programs.
	mat := func(name string, scale float64, dims ...uint64) {
		f.Tensors = append(f.Tensors, Tensor{Name: name, Dims: dims, Type: TensorF32, Data: rng.f32s(dims, scale)})
	}
	ones := func(name string) {
		f.Tensors = append(f.Tensors, Tensor{Name: name, Dims: []uint64{tinyEmbd}, Type: TensorF32, Data: constF32(tinyEmbd, 1)})
	}
	inv := 1 / math.Sqrt(tinyEmbd)
	mat("token_embd.weight", 1, tinyEmbd, TinyVocab)
	for i := 0; i < tinyLayers; i++ {
		p := fmt.Sprintf("blk.%d.", i)
		ones(p + "attn_norm.weight")
		mat(p+"attn_q.weight", inv, tinyEmbd, tinyEmbd)
		mat(p+"attn_k.weight", inv, tinyEmbd, kvDim)
		mat(p+"attn_v.weight", inv, tinyEmbd, kvDim)
		mat(p+"attn_output.weight", inv, tinyEmbd, tinyEmbd)
		ones(p + "ffn_norm.weight")
		mat(p+"ffn_gate.weight", inv, tinyEmbd, tinyFF)
		mat(p+"ffn_up.weight", inv, tinyEmbd, tinyFF)
		mat(p+"ffn_down.weight", 1/math.Sqrt(tinyFF), tinyFF, tinyEmbd)
	}
	ones("output_norm.weight")
	mat("output.weight", 1, tinyEmbd, TinyVocab)
	return f
}

// WriteTinyLlama writes the tiny test model (see [TinyLlama]) to w. The bytes
// are identical on every call.
func WriteTinyLlama(w io.Writer) error {
	return TinyLlama().Write(w)
}

// splitmix is SplitMix64, a small deterministic generator (math/rand's
// sequences are not promised stable across Go releases).
type splitmix uint64

func (s *splitmix) next() uint64 {
	*s += 0x9E3779B97F4A7C15
	z := uint64(*s)
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

// f32s returns little-endian float32 data uniform in [-scale·√3, scale·√3)
// (unit variance times scale) for a tensor of dims.
func (s *splitmix) f32s(dims []uint64, scale float64) []byte {
	n := uint64(1)
	for _, d := range dims {
		n *= d
	}
	out := make([]byte, 4*n)
	for i := uint64(0); i < n; i++ {
		u := float64(s.next()>>11) / (1 << 53) // [0,1)
		v := float32((2*u - 1) * math.Sqrt(3) * scale)
		binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(v))
	}
	return out
}

func constF32(n int, v float32) []byte {
	out := make([]byte, 4*n)
	for i := 0; i < n; i++ {
		binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(v))
	}
	return out
}
