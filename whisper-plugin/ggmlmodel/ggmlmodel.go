// Package ggmlmodel writes small random-weight whisper models in whisper.cpp's
// legacy ggml file format, so that tests and the supervisor's dev mode can
// run a real whisper.cpp without downloading anything. It is pure Go (no
// cgo) and deterministic: the same [Params] always give the same bytes.
//
// The file layout is the one whisper.cpp's whisper_model_load reads:
//
//	u32 magic "ggml" (0x67676d6c)
//	i32 hparams: n_vocab n_audio_ctx n_audio_state n_audio_head n_audio_layer
//	             n_text_ctx n_text_state n_text_head n_text_layer n_mels ftype
//	i32 n_mel, i32 n_fft, f32 filters[n_mel*n_fft]     (log-mel filterbank)
//	i32 n_words, then per word: u32 len, bytes          (text vocabulary)
//	tensors until EOF: i32 n_dims, i32 name_len, i32 type,
//	             i32 ne[n_dims] (fastest first), name, data
//
// A model with n_vocab ≥ 51865 is multilingual (language and translate
// tokens exist); 51864 makes it English-only. whisper.cpp names the special
// tokens itself when the vocabulary holds fewer words than n_vocab, so only
// the text tokens are written.
//
// The weights are random, so transcripts are gibberish made of the
// vocabulary's syllables; what the model is for is exercising the whole
// engine (mel front end, encoder, decoder, timestamps, fallbacks) the same
// way a real model does. A few weights are shaped (see loudnessChannel) so
// that the transcript depends on the audio: silence, a tone and speech give
// different transcripts, and a test of the audio path can fail.
package ggmlmodel

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"github.com/stokerhq/stoker/llamacpp-plugin/gguf"
	"hash/fnv"
	"io"
	"math"
)

// Params are the hyper-parameters of a generated model. They are written to
// the file header, which is where whisper.cpp takes them from.
type Params struct {
	Vocab      int // 51865 multilingual, 51864 English-only
	AudioCtx   int // encoder positions (1500 = 30 s of audio)
	AudioState int
	AudioHead  int
	AudioLayer int
	TextCtx    int // decoder positions
	TextState  int // must equal AudioState
	TextHead   int
	TextLayer  int
	Mels       int    // 80 (128 for large-v3)
	Seed       uint64 // varies the weights
}

// TinyParams are the parameters of the "tiny-whisper" test model: the real
// audio geometry (80 mels, 30 s windows, multilingual vocabulary) with a
// 64-wide encoder of two layers and decoder of one (whisper.cpp takes a
// two-layer decoder for distil-whisper and turns timestamps off). The file is
// about 7.6 MB.
func TinyParams() Params {
	return Params{
		Vocab: 51865, AudioCtx: 1500, AudioState: 64, AudioHead: 1, AudioLayer: 2,
		TextCtx: 448, TextState: 64, TextHead: 1, TextLayer: 1, Mels: 80, Seed: 1,
	}
}

// WriteTinyWhisper writes the "tiny-whisper" model ([TinyParams]) to w.
func WriteTinyWhisper(w io.Writer) error { return Write(w, TinyParams()) }

// The fixed geometry of whisper's front end and vocabulary.
const (
	sampleRate     = 16000
	nFFT           = 400
	nFreq          = nFFT/2 + 1
	textTokens     = 50257 // tokens before <|endoftext|> in the multilingual vocabulary
	minVocab       = 51864
	ftypeMostlyF16 = 1 // GGML_FTYPE_MOSTLY_F16
	typeF32        = 0 // GGML_TYPE_F32
	typeF16        = 1 // GGML_TYPE_F16
	fileMagic      = 0x67676d6c
)

func (p Params) validate() error {
	switch {
	case p.Vocab < minVocab || p.Vocab > 51866:
		return fmt.Errorf("ggmlmodel: vocab %d (want 51864..51866)", p.Vocab)
	case p.AudioState != p.TextState:
		return fmt.Errorf("ggmlmodel: audio state %d != text state %d", p.AudioState, p.TextState)
	case p.AudioState <= 0 || p.AudioHead <= 0 || p.AudioState%p.AudioHead != 0:
		return fmt.Errorf("ggmlmodel: audio state %d not divisible into %d heads", p.AudioState, p.AudioHead)
	case p.TextHead <= 0 || p.TextState%p.TextHead != 0:
		return fmt.Errorf("ggmlmodel: text state %d not divisible into %d heads", p.TextState, p.TextHead)
	case p.AudioLayer <= 0 || p.TextLayer <= 0 || p.AudioCtx <= 0 || p.TextCtx <= 0 || p.Mels <= 0:
		return fmt.Errorf("ggmlmodel: non-positive size in %+v", p)
	case p.AudioState%2 != 0:
		return fmt.Errorf("ggmlmodel: audio state %d must be even (sinusoidal positions)", p.AudioState)
	}
	return nil
}

// Write writes a model with parameters p to w. It fails only on invalid
// parameters or a write error.
func Write(w io.Writer, p Params) error {
	if err := p.validate(); err != nil {
		return err
	}
	fw := &fileWriter{w: bufio.NewWriterSize(w, 1<<20), seed: p.Seed}
	fw.i32(fileMagic)
	for _, v := range []int{p.Vocab, p.AudioCtx, p.AudioState, p.AudioHead, p.AudioLayer,
		p.TextCtx, p.TextState, p.TextHead, p.TextLayer, p.Mels, ftypeMostlyF16} {
		fw.i32(int32(v))
	}
	fw.i32(int32(p.Mels))
	fw.i32(nFreq)
	for _, v := range MelFilters(p.Mels) {
		fw.f32(v)
	}
	words := Vocabulary()
	if p.Vocab == minVocab { // English-only: <|endoftext|> is token 50256
		words = words[:textTokens-1]
	}
	fw.i32(int32(len(words)))
	for _, word := range words {
		fw.i32(int32(len(word)))
		fw.bytes([]byte(word))
	}
	writeTensors(fw, p)
	if fw.err != nil {
		return fmt.Errorf("ggmlmodel: writing model: %w", fw.err)
	}
	if err := fw.w.Flush(); err != nil {
		return fmt.Errorf("ggmlmodel: writing model: %w", err)
	}
	return nil
}

// writeTensors writes every tensor whisper.cpp expects, typed as its loader
// wants them for ftype F16: matrices and convolution kernels F16, vectors,
// biases and positional embeddings F32.
func writeTensors(fw *fileWriter, p Params) {
	s := p.AudioState
	fw.tensor("encoder.positional_embedding", typeF32, []int{s, p.AudioCtx}, sinusoids(p.AudioCtx, s))
	conv1 := fw.randomData("encoder.conv1.weight", 3*p.Mels*s, 1/math.Sqrt(float64(3*p.Mels)))
	conv1b := fw.randomData("encoder.conv1.bias", s, 0.02)
	conv2 := fw.randomData("encoder.conv2.weight", 3*s*s, 1/math.Sqrt(float64(3*s)))
	conv2b := fw.randomData("encoder.conv2.bias", s, 0.02)
	loudnessConvs(p, conv1, conv1b, conv2, conv2b)
	fw.tensor("encoder.conv1.weight", typeF16, []int{3, p.Mels, s}, conv1)
	fw.tensor("encoder.conv1.bias", typeF32, []int{1, s}, conv1b)
	fw.tensor("encoder.conv2.weight", typeF16, []int{3, s, s}, conv2)
	fw.tensor("encoder.conv2.bias", typeF32, []int{1, s}, conv2b)
	fw.constant("encoder.ln_post.weight", []int{s}, 1)
	fw.constant("encoder.ln_post.bias", []int{s}, 0)
	for i := range p.AudioLayer {
		block(fw, fmt.Sprintf("encoder.blocks.%d.", i), s, false)
	}
	fw.random("decoder.positional_embedding", typeF32, []int{s, p.TextCtx}, 0.1)
	fw.tensor("decoder.token_embedding.weight", typeF16, []int{s, p.Vocab}, tokenEmbedding(p, fw.rng("decoder.token_embedding.weight")))
	fw.constant("decoder.ln.weight", []int{s}, 1)
	lnBias := make([]float32, s)
	lnBias[eotDim], lnBias[tsDim], lnBias[tsOrderDim] = eotBias, tsBias, tsOrderBias
	fw.tensor("decoder.ln.bias", typeF32, []int{s}, lnBias)
	for i := range p.TextLayer {
		block(fw, fmt.Sprintf("decoder.blocks.%d.", i), s, true)
	}
}

// The decoder's output is shaped so that a random model still decodes like
// a confident one, which keeps whisper.cpp off its slow paths (temperature
// fallback, 220-token windows) and gives real segments:
//
//   - text-token embeddings are large (logit spread ≈ 20), so the top token
//     has a probability near 1 and the average log-probability stays above
//     whisper's -1 fallback threshold;
//   - dimension eotDim of the final layer-norm output carries a bias that
//     only <|endoftext|>'s embedding reads, so EOT wins at a few percent of
//     the steps: windows end after tens of tokens (below the 32-token
//     entropy check);
//   - dimension tsDim does the same for the timestamp tokens, so segments
//     are closed by timestamp pairs now and then, and dimension tsOrderDim
//     favours early timestamps, so that a timestamp advances by a second or
//     two rather than jumping to the end of the window.
//
// Embeddings are tied: the same matrix embeds the input tokens, and a
// residual stream dominated by the input embedding would make every token
// predict itself. The decoder MLP's output is therefore scaled up
// (decoderMLPGain) so that the final hidden state is a random function of
// the context rather than a copy of the last token.
const (
	decoderMLPGain = 100
	eotDim         = 0
	tsDim          = 1
	tsOrderDim     = 2
	textScale      = 4.3 // uniform ±textScale on the other dimensions
	eotWeight      = 20
	eotBias        = 2.0
	tsWeight       = 20
	tsBias         = 0.0
	tsScale        = 1.0  // random part of timestamp embeddings, × textScale
	tsOrderBias    = 5.0  // keeps the time-order dimension positive
	tsOrderSlope   = 0.01 // per timestamp (20 ms): earlier times are likelier
	timestampsN    = 1501 // <|0.00|> .. <|30.00|>
)

// tokenEmbedding returns the n_vocab × state token embedding (row-major by
// token) shaped as described above.
func tokenEmbedding(p Params, rng *splitmix) []float32 {
	s := p.TextState
	eot := textTokens // multilingual: <|endoftext|> is 50257
	if p.Vocab == minVocab {
		eot = textTokens - 1
	}
	beg := p.Vocab - timestampsN
	out := make([]float32, s*p.Vocab)
	for t := range p.Vocab {
		row := out[t*s : (t+1)*s]
		scale := textScale
		if t >= beg {
			scale *= tsScale
		}
		for d := range row {
			row[d] = float32((rng.float64()*2 - 1) * scale)
		}
		row[eotDim], row[tsDim], row[tsOrderDim] = 0, 0, 0
		switch {
		case t == eot:
			row[eotDim] = eotWeight
		case t >= beg:
			row[tsDim] = tsWeight
			row[tsOrderDim] = float32(-tsOrderSlope * float64(t-beg))
		}
	}
	return out
}

// The audio reaches the transcript through the decoder's cross-attention,
// and with random weights it barely does: the attention is spread evenly
// over all 1500 encoder positions, 25 s of which are the padding of a 5 s
// clip, and what it adds is small beside the token embeddings. Three
// shaped weights make it count (everything else stays random):
//
//   - the encoder's last channel (loudnessChannel) carries the frame's
//     loudness: conv1 takes loudnessGain × the mean log-mel of the frame
//     (shifted by +1.5, whisper's floor, so that it is ≥ 0 and passes the
//     GELU), conv2 passes that channel on alone;
//   - the cross-attention's query has a large constant (loudnessQuery) on
//     that channel and its key reads only that channel, so the attention
//     goes to the loudest frames: the clip's sound, not its padding (for
//     silence, evenly everywhere);
//   - the cross-attention's output is crossGain times the random one, so
//     the attended frames move the decoder's state enough to change the
//     tokens it picks.
//
// Silence, a 440 Hz tone and speech then give three different transcripts,
// while decoding stays as confident and short as before.
const (
	loudnessGain  = 8
	loudnessQuery = 30
	crossGain     = 4
)

// loudnessChannel is the encoder channel that carries a frame's loudness.
func loudnessChannel(p Params) int { return p.AudioState - 1 }

// loudnessConvs shapes the encoder's convolutions (kernels [out][in][3],
// the tap in the middle is the frame itself) so that loudnessChannel holds
// the frame's loudness.
func loudnessConvs(p Params, conv1, conv1b, conv2, conv2b []float32) {
	s, l := p.AudioState, loudnessChannel(p)
	for m := range p.Mels {
		for k := range 3 {
			conv1[(l*p.Mels+m)*3+k] = 0
		}
		conv1[(l*p.Mels+m)*3+1] = float32(loudnessGain / float64(p.Mels))
	}
	conv1b[l] = 1.5 * loudnessGain
	for i := range s {
		for k := range 3 {
			conv2[(l*s+i)*3+k] = 0
		}
	}
	conv2[(l*s+l)*3+1] = 1
	conv2b[l] = 0
}

// block writes one residual attention block; decoder blocks also have
// cross-attention, shaped to attend to the loud frames.
func block(fw *fileWriter, prefix string, s int, cross bool) {
	lin := 1 / math.Sqrt(float64(s))
	attn := func(name string, loud bool) {
		fw.constant(prefix+name+"_ln.weight", []int{s}, 1)
		fw.constant(prefix+name+"_ln.bias", []int{s}, 0)
		qb := fw.randomData(prefix+name+".query.bias", s, 0.02)
		kw := fw.randomData(prefix+name+".key.weight", s*s, lin) // [out][in]
		gain := 1.0
		if loud {
			l := s - 1 // loudnessChannel
			qb[l] = loudnessQuery
			for i := range s {
				kw[l*s+i] = 0
			}
			kw[l*s+l] = 1
			gain = crossGain
		}
		fw.random(prefix+name+".query.weight", typeF16, []int{s, s}, lin)
		fw.tensor(prefix+name+".query.bias", typeF32, []int{s}, qb)
		fw.tensor(prefix+name+".key.weight", typeF16, []int{s, s}, kw)
		fw.random(prefix+name+".value.weight", typeF16, []int{s, s}, lin)
		fw.random(prefix+name+".value.bias", typeF32, []int{s}, 0.02)
		fw.random(prefix+name+".out.weight", typeF16, []int{s, s}, lin*gain)
		fw.random(prefix+name+".out.bias", typeF32, []int{s}, 0.02)
	}
	attn("attn", false)
	out := 1 / math.Sqrt(float64(4*s))
	if cross {
		attn("cross_attn", true)
		out *= decoderMLPGain
	}
	fw.constant(prefix+"mlp_ln.weight", []int{s}, 1)
	fw.constant(prefix+"mlp_ln.bias", []int{s}, 0)
	fw.random(prefix+"mlp.0.weight", typeF16, []int{s, 4 * s}, lin)
	fw.random(prefix+"mlp.0.bias", typeF32, []int{4 * s}, 0.02)
	fw.random(prefix+"mlp.2.weight", typeF16, []int{4 * s, s}, out)
	fw.random(prefix+"mlp.2.bias", typeF32, []int{s}, 0.02)
}

// sinusoids are whisper's encoder positions: row t holds sin(t·f_k) for the
// first half of the channels and cos(t·f_k) for the second.
func sinusoids(length, channels int) []float32 {
	half := channels / 2
	inc := math.Log(10000) / float64(max(1, half-1))
	out := make([]float32, length*channels)
	for t := range length {
		for k := range half {
			a := float64(t) * math.Exp(-inc*float64(k))
			out[t*channels+k] = float32(math.Sin(a))
			out[t*channels+half+k] = float32(math.Cos(a))
		}
	}
	return out
}

// fileWriter writes little-endian values and remembers the first error.
type fileWriter struct {
	w    *bufio.Writer
	seed uint64
	err  error
	buf  [8]byte
}

func (f *fileWriter) bytes(b []byte) {
	if f.err == nil {
		_, f.err = f.w.Write(b)
	}
}

func (f *fileWriter) i32(v int32) {
	binary.LittleEndian.PutUint32(f.buf[:4], uint32(v))
	f.bytes(f.buf[:4])
}

func (f *fileWriter) f32(v float32) {
	binary.LittleEndian.PutUint32(f.buf[:4], math.Float32bits(v))
	f.bytes(f.buf[:4])
}

func (f *fileWriter) f16(v float32) {
	binary.LittleEndian.PutUint16(f.buf[:2], gguf.F16(v))
	f.bytes(f.buf[:2])
}

func (f *fileWriter) header(name string, typ int32, ne []int) {
	f.i32(int32(len(ne)))
	f.i32(int32(len(name)))
	f.i32(typ)
	for _, n := range ne {
		f.i32(int32(n))
	}
	f.bytes([]byte(name))
}

func (f *fileWriter) tensor(name string, typ int32, ne []int, data []float32) {
	f.header(name, typ, ne)
	for _, v := range data {
		if typ == typeF16 {
			f.f16(v)
		} else {
			f.f32(v)
		}
	}
}

func (f *fileWriter) constant(name string, ne []int, v float32) {
	f.header(name, typeF32, ne)
	for range count(ne) {
		f.f32(v)
	}
}

// random writes a tensor of values uniform in [-scale, scale), drawn from a
// generator seeded by the model seed and the tensor's name, so that one
// tensor's values do not depend on the others' sizes.
func (f *fileWriter) random(name string, typ int32, ne []int, scale float64) {
	rng := f.rng(name)
	f.header(name, typ, ne)
	for range count(ne) {
		v := float32((rng.float64()*2 - 1) * scale)
		if typ == typeF16 {
			f.f16(v)
		} else {
			f.f32(v)
		}
	}
}

// randomData returns the n values random would write for name.
func (f *fileWriter) randomData(name string, n int, scale float64) []float32 {
	rng := f.rng(name)
	out := make([]float32, n)
	for i := range out {
		out[i] = float32((rng.float64()*2 - 1) * scale)
	}
	return out
}

// rng returns the generator for the tensor name.
func (f *fileWriter) rng(name string) *splitmix {
	h := fnv.New64a()
	h.Write([]byte(name))
	return &splitmix{state: h.Sum64() ^ f.seed*0x9E3779B97F4A7C15}
}

func count(ne []int) int {
	n := 1
	for _, v := range ne {
		n *= v
	}
	return n
}

// splitmix is SplitMix64: tiny, fast and fully specified, so the generated
// files are stable across Go releases (math/rand's streams are not promised).
type splitmix struct{ state uint64 }

func (s *splitmix) next() uint64 {
	s.state += 0x9E3779B97F4A7C15
	z := s.state
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

// float64 returns a value in [0, 1).
func (s *splitmix) float64() float64 { return float64(s.next()>>11) / (1 << 53) }
