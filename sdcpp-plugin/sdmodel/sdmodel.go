// Package sdmodel generates tiny-sd, a small random-weight model that
// stable-diffusion.cpp loads as an SDXS-512-DS checkpoint (CLIP ViT-L/14
// text encoder, a narrow SDXS UNet, TAESD autoencoder) in one GGUF file.
// The sd.cpp plugin's tests and the supervisor's -dev mode use it so that
// image jobs run through the real engine with nothing downloaded. Its
// images are noise, but they change with the prompt and the seed.
//
// The bytes are the same on every call and every machine: weights come
// from a fixed-seed SplitMix64 stream per tensor and are encoded with
// integer and single float32 operations only. [TinySDSHA256] pins them, so
// a caller can tell whether a file on disk is current without generating
// the model again.
//
// Any package may import sdmodel; it depends only on the gguf package.
package sdmodel

import (
	"fmt"
	"hash/fnv"
	"io"
	"math"

	"github.com/stokerhq/stoker/llamacpp-plugin/gguf"
)

// TinySDFilename is the file name the model is served and stored under.
const TinySDFilename = "tiny-sd.gguf"

// TinySDSHA256 and TinySDSize are the hex SHA-256 digest and the length of
// what WriteTinySD writes. They are fixed here, not computed, so that
// checking a file costs one read of it and no generation;
// TestTinySDDeterministic keeps them equal to the generator's output (a
// change to the generator must update both, on purpose).
const (
	TinySDSHA256 = "54be4aef644170d376729cebe7233536a7f85128f71226039ae5f2722e0cccb1"
	TinySDSize   = 193_921_312
)

// Defaults are the request parameters tiny-sd is meant to run with.
type Defaults struct {
	Width, Height  int
	Steps          int
	CfgScale       float32
	SamplingMethod string // an sd.cpp --sampling-method name
}

// TinySDDefaults returns the recommended parameters: a 64×64 image (an 8×8
// latent), 2 Euler steps, and a CFG scale of 1, at which sd.cpp skips the
// unconditional pass and runs the UNet once per step. A random model gains
// nothing from more steps or guidance. With them sd-cli makes an image in
// about 1 s with 240 MB peak memory on 2 cores, most of it the text
// encoder and the decoder.
func TinySDDefaults() Defaults {
	return Defaults{Width: 64, Height: 64, Steps: 2, CfgScale: 1, SamplingMethod: "euler"}
}

// seed is the root of every tensor's random stream.
const seed = 0x5D_7E57_0001

// TinySD returns the model as a GGUF file whose tensors produce their data
// while the file is written (194 MB, never held in memory whole: 140M
// parameters, Q8_0 matrices, F16 convolutions and token embedding, F32
// vectors).
func TinySD() *gguf.File {
	var l layout
	l.clip("cond_stage_model.transformer.text_model.")
	l.unet("model.diffusion_model.")
	l.tae("first_stage_model.")
	f := &gguf.File{KV: []gguf.KV{
		{Key: "general.name", Value: "stoker tiny-sd"},
		{Key: "general.description", Value: "random-weight SDXS-512-DS layout for tests; its images are noise"},
		{Key: "general.alignment", Value: uint32(gguf.DefaultAlignment)},
	}}
	for _, p := range l.params {
		f.Tensors = append(f.Tensors, gguf.Tensor{Name: p.name, Dims: p.dims, Type: p.typ, Stream: p.stream})
	}
	return f
}

// WriteTinySD writes the whole model to w (see [TinySD]); the bytes are
// identical on every call. It does not close w.
func WriteTinySD(w io.Writer) error {
	return TinySD().Write(w)
}

// chunk is how many values stream generates and encodes at a time (a
// multiple of the Q8_0 block).
const chunk = 1 << 14

// stream writes p's values encoded as p.typ.
func (p *param) stream(w io.Writer) error {
	h := fnv.New64a()
	h.Write([]byte(p.name))
	rng := splitmix(seed ^ h.Sum64())
	var n uint64 = 1
	for _, d := range p.dims {
		n *= d
	}
	// value = mean + std·u, u uniform with unit variance: a 24-bit signed
	// integer times one float32 factor, exact on every machine.
	k := float32(p.std * math.Sqrt(3) / (1 << 23))
	mean := float32(p.mean)
	if p.centred && n > chunk {
		return fmt.Errorf("sdmodel: %s: centred tensor of %d values, more than one chunk", p.name, n)
	}
	vals := make([]float32, chunk)
	buf := make([]byte, 0, 4*chunk)
	for done := uint64(0); done < n; {
		m := min(n-done, chunk)
		vs := vals[:m]
		for i := range vs {
			u := int32(rng.next()>>40) - 1<<23
			vs[i] = mean + float32(float32(u)*k) // the conversion forbids a fused multiply-add
		}
		if p.centred {
			centre(vs, int(p.dims[0]*p.dims[1]))
		}
		buf = buf[:0]
		switch p.typ {
		case gguf.TensorQ8_0:
			var err error
			if buf, err = gguf.AppendQ8_0(buf, vs); err != nil {
				return err
			}
		case gguf.TensorF16:
			buf = gguf.AppendF16(buf, vs)
		default:
			buf = gguf.AppendF32(buf, vs)
		}
		if _, err := w.Write(buf); err != nil {
			return err
		}
		done += m
	}
	return nil
}

// centre shifts each run of size values (one kernel) to sum to about zero,
// summing in order in float32 so the result is the same everywhere.
func centre(vs []float32, size int) {
	for o := 0; o+size <= len(vs); o += size {
		w := vs[o : o+size]
		var sum float32
		for _, v := range w {
			sum += v
		}
		m := sum / float32(size)
		for i := range w {
			w[i] -= m
		}
	}
}

// splitmix is SplitMix64 (math/rand's streams are not promised stable
// across Go releases).
type splitmix uint64

func (s *splitmix) next() uint64 {
	*s += 0x9E3779B97F4A7C15
	z := uint64(*s)
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

func sqrt(n int) float64 { return math.Sqrt(float64(n)) }
