package sdmodel

import (
	"fmt"

	"github.com/stokerhq/stoker/llamacpp-plugin/gguf"
)

// The architecture is stable-diffusion.cpp's SDXS-512-DS, the tiny UNet of
// the SD 1.x family, which sd.cpp recognises from the tensor names alone:
// a 768-wide CLIP token embedding makes it SD 1.x; a UNet with no
// middle_block.1 and no output_blocks.7.1 makes it SDXS-512-DS, whose VAE
// is the tiny TAESD autoencoder (stored under first_stage_model.). The UNet
// reads its width (model_channels) from input_blocks.0.0.weight, so this
// model keeps the SDXS block structure at a fraction of its 320 channels.
// The CLIP ViT-L/14 text encoder and TAESD have fixed sizes in sd.cpp.
const (
	clipVocab     = 49408
	clipPositions = 77
	clipWidth     = 768
	clipFF        = 3072
	clipLayers    = 12

	// unetChannels is the UNet's model_channels (SDXS has 320). It must be
	// a multiple of 32 (GroupNorm32) and of the 8 attention heads.
	unetChannels = 64
	unetHeads    = 8
	latentChans  = 4

	taeChannels = 64
	taeBlocks   = 3 // TAESD blocks per resolution
)

// unetMults are the SDXS channel multipliers per resolution; attention
// runs at the downsampling factors in unetAttention (2 and 4: the full-
// resolution level has none).
var (
	unetMults     = [...]int{1, 2, 4}
	unetAttention = map[int]bool{2: true, 4: true}
)

// Gains above the unit-variance default that make the prompt, not only the
// seed, shape the image (measured with sd-cli, see the sdcpp-tagged test):
// cross-attention sharper over the 77 context tokens (query and key ×2)
// and stronger in the residual stream (output ×4), and a larger predicted
// noise (UNet output ×2), which weighs the UNet's prediction against the
// seed's initial noise in the final latent.
const (
	crossQKGain  = 2
	crossOutGain = 4
	epsGain      = 2
)

// taeOutGain scales the TAESD decoder's last convolution, whose output is
// the image in [0, 1]: a standard deviation of about 0.17 around mid grey
// keeps nearly every pixel off the clamp.
const taeOutGain = 0.2

// param is one tensor of the model and how its values are drawn: mean plus
// std times a unit-variance uniform variable (std 0 gives a constant).
type param struct {
	name      string
	dims      []uint64 // ggml order: ne[0] (the input side of a matrix) first
	typ       gguf.TensorType
	mean, std float64
	// centred convolution kernels are shifted to sum to zero (each k×k
	// kernel from one input channel to one output), so that the input
	// channels' means, all positive after a ReLU, add no constant to the
	// output.
	centred bool
}

// fanIn is the number of inputs each output of the tensor sums over: all
// dimensions but the last (a linear layer's in_features, a convolution's
// kw·kh·in_channels).
func (p *param) fanIn() uint64 {
	n := uint64(1)
	for _, d := range p.dims[:len(p.dims)-1] {
		n *= d
	}
	return n
}

// Bias values: small, so that a sign or offset in a layer's output comes
// from its input.
const biasStd = 0.02

// layout collects the tensors in the order they are written.
type layout struct{ params []param }

func (l *layout) add(p param) { l.params = append(l.params, p) }

// linear adds a fully connected layer (ggml: weight [in, out]). Its weight is
// Q8_0 (sd.cpp's Linear takes the file's type) and scaled by gain/√in so
// that a unit-variance input gives a unit-variance output.
func (l *layout) linear(name string, in, out int, bias bool, gain float64) {
	typ := gguf.TensorQ8_0
	if in%gguf.Q8_0Block != 0 {
		typ = gguf.TensorF16
	}
	l.add(param{name: name + ".weight", dims: dims(in, out), typ: typ, std: gain / sqrt(in)})
	if bias {
		l.add(param{name: name + ".bias", dims: dims(out), typ: gguf.TensorF32, std: biasStd})
	}
}

// linearF16 is a linear layer that stays F16, as sd.cpp's own quantizer
// leaves the UNet's time embedding.
func (l *layout) linearF16(name string, in, out int) {
	l.add(param{name: name + ".weight", dims: dims(in, out), typ: gguf.TensorF16, std: 1 / sqrt(in)})
	l.add(param{name: name + ".bias", dims: dims(out), typ: gguf.TensorF32, std: biasStd})
}

// conv adds a square 2-D convolution (ggml: weight [k, k, in, out]), F16 as
// sd.cpp's Conv2d always holds it.
func (l *layout) conv(name string, in, out, k int, bias bool, gain float64) {
	l.add(param{name: name + ".weight", dims: dims(k, k, in, out), typ: gguf.TensorF16, std: gain / sqrt(in*k*k)})
	if bias {
		l.add(param{name: name + ".bias", dims: dims(out), typ: gguf.TensorF32, std: biasStd})
	}
}

// norm adds a LayerNorm or GroupNorm: weight 1, bias 0.
func (l *layout) norm(name string, n int) {
	l.add(param{name: name + ".weight", dims: dims(n), typ: gguf.TensorF32, mean: 1})
	l.add(param{name: name + ".bias", dims: dims(n), typ: gguf.TensorF32})
}

// clip adds the CLIP ViT-L/14 text encoder under p (sd.cpp's CLIPTextModel,
// OPENAI_CLIP_VIT_L_14).
func (l *layout) clip(p string) {
	// The token embedding stays F16 (sd.cpp never quantizes embeddings).
	// Unit-variance tokens over small positions let the prompt, not the
	// position, dominate what the UNet attends to.
	l.add(param{name: p + "embeddings.token_embedding.weight", dims: dims(clipWidth, clipVocab), typ: gguf.TensorF16, std: 1})
	l.add(param{name: p + "embeddings.position_embedding.weight", dims: dims(clipWidth, clipPositions), typ: gguf.TensorF32, std: 0.1})
	for i := range clipLayers {
		lp := fmt.Sprintf("%sencoder.layers.%d.", p, i)
		for _, proj := range []string{"q_proj", "k_proj", "v_proj", "out_proj"} {
			l.linear(lp+"self_attn."+proj, clipWidth, clipWidth, true, 1)
		}
		l.norm(lp+"layer_norm1", clipWidth)
		l.linear(lp+"mlp.fc1", clipWidth, clipFF, true, 1)
		l.linear(lp+"mlp.fc2", clipFF, clipWidth, true, 1)
		l.norm(lp+"layer_norm2", clipWidth)
	}
	l.norm(p+"final_layer_norm", clipWidth)
}

// unet adds the SDXS-512-DS UNet under p (sd.cpp's UnetModelBlock with
// tiny_unet: one res block per resolution, no middle block), with block
// numbering as sd.cpp derives it.
func (l *layout) unet(p string) {
	mc := unetChannels
	emb := 4 * mc // time_embed_dim
	l.linearF16(p+"time_embed.0", mc, emb)
	l.linearF16(p+"time_embed.2", emb, emb)
	l.conv(p+"input_blocks.0.0", latentChans, mc, 3, true, 1)

	skips := []int{mc} // channels of each input block's output, for the skip connections
	ch, ds, idx := mc, 1, 0
	for i, mult := range unetMults {
		idx++
		l.resBlock(fmt.Sprintf("%sinput_blocks.%d.0", p, idx), ch, emb, mult*mc)
		ch = mult * mc
		if unetAttention[ds] {
			l.transformer(fmt.Sprintf("%sinput_blocks.%d.1", p, idx), ch)
		}
		skips = append(skips, ch)
		idx++ // the tiny UNet leaves out the second res block, and its index
		if i != len(unetMults)-1 {
			idx++
			l.conv(fmt.Sprintf("%sinput_blocks.%d.0.op", p, idx), ch, ch, 3, true, 1)
			skips = append(skips, ch)
			ds *= 2
		}
	}

	idx = 0
	for i := len(unetMults) - 1; i >= 0; i-- {
		for j := range 2 { // num_res_blocks + 1
			skip := skips[len(skips)-1]
			skips = skips[:len(skips)-1]
			l.resBlock(fmt.Sprintf("%soutput_blocks.%d.0", p, idx), ch+skip, emb, unetMults[i]*mc)
			ch = unetMults[i] * mc
			up := 1
			if unetAttention[ds] {
				l.transformer(fmt.Sprintf("%soutput_blocks.%d.1", p, idx), ch)
				up++
			}
			if i > 0 && j == 1 {
				// sd.cpp's tiny-UNet numbering: the upsampler moves to the
				// next index, as sub-block 1 there only at index 2.
				idx++
				if idx == 2 {
					up = 1
				}
				l.conv(fmt.Sprintf("%soutput_blocks.%d.%d.conv", p, idx, up), ch, ch, 3, true, 1)
				ds /= 2
			}
			idx++
		}
	}
	l.norm(p+"out.0", mc)
	l.conv(p+"out.2", mc, latentChans, 3, true, epsGain)
}

// resBlock adds a UNet ResBlock from in to out channels.
func (l *layout) resBlock(p string, in, emb, out int) {
	l.norm(p+".in_layers.0", in)
	l.conv(p+".in_layers.2", in, out, 3, true, 1)
	l.linear(p+".emb_layers.1", emb, out, true, 1)
	l.norm(p+".out_layers.0", out)
	l.conv(p+".out_layers.3", out, out, 3, true, 1)
	if in != out {
		l.conv(p+".skip_connection", in, out, 1, true, 1)
	}
}

// transformer adds a SpatialTransformer of depth 1 over ch channels with
// 1×1 convolutions for proj_in/proj_out (the SD 1.x form), cross-attending
// to the CLIP output.
func (l *layout) transformer(p string, ch int) {
	l.norm(p+".norm", ch)
	l.conv(p+".proj_in", ch, ch, 1, true, 1)
	b := p + ".transformer_blocks.0."
	for _, attn := range []string{"attn1", "attn2"} {
		kv := ch // self-attention
		if attn == "attn2" {
			kv = clipWidth
		}
		qk, out := 1.0, 1.0
		if attn == "attn2" {
			qk, out = crossQKGain, crossOutGain
		}
		l.linear(b+attn+".to_q", ch, ch, false, qk)
		l.linear(b+attn+".to_k", kv, ch, false, qk)
		l.linear(b+attn+".to_v", kv, ch, false, 1)
		l.linear(b+attn+".to_out.0", ch, ch, true, out)
	}
	l.linear(b+"ff.net.0.proj", ch, 2*4*ch, true, 1) // GEGLU: value and gate
	l.linear(b+"ff.net.2", 4*ch, ch, true, 1)
	for _, n := range []string{"norm1", "norm2", "norm3"} {
		l.norm(b+n, ch)
	}
	l.conv(p+".proj_out", ch, ch, 1, true, 1)
}

// tae adds the TAESD decoder and encoder under p (sd.cpp's TinyDecoder and
// TinyEncoder; their layer indices count the ReLUs and upsamplers that hold
// no weights).
func (l *layout) tae(p string) {
	c := taeChannels
	// ReLU networks: He gains (√2) on the inner convolutions, and a small
	// last convolution in each block so that the residual sum stays near
	// unit scale through the blocks.
	block := func(name string) {
		l.conv(name+".conv.0", c, c, 3, true, sqrt(2))
		l.conv(name+".conv.2", c, c, 3, true, sqrt(2))
		l.conv(name+".conv.4", c, c, 3, true, 0.5)
	}
	layer := func(prefix string, i int) string { return fmt.Sprintf("%s%d", prefix, i) }

	dec := p + "decoder.layers."
	idx := 0
	l.conv(layer(dec, idx), latentChans, c, 3, true, 1)
	idx += 2 // ReLU
	for range 3 {
		for range taeBlocks {
			block(layer(dec, idx))
			idx++
		}
		idx++ // upsample
		l.conv(layer(dec, idx), c, c, 3, false, sqrt(2))
		idx++
	}
	block(layer(dec, idx))
	idx++
	// The image comes out in [0, 1] unscaled: centre it at mid grey with a
	// contrast that keeps most pixels off the clamp.
	l.add(param{name: layer(dec, idx) + ".weight", dims: dims(3, 3, c, 3), typ: gguf.TensorF16, std: taeOutGain / sqrt(9*c), centred: true})
	l.add(param{name: layer(dec, idx) + ".bias", dims: dims(3), typ: gguf.TensorF32, mean: 0.5, std: 0.05})

	enc := p + "encoder.layers."
	idx = 0
	l.conv(layer(enc, idx), 3, c, 3, true, 1)
	idx++
	block(layer(enc, idx))
	idx++
	for range 3 {
		l.conv(layer(enc, idx), c, c, 3, false, sqrt(2)) // stride 2
		idx++
		for range taeBlocks {
			block(layer(enc, idx))
			idx++
		}
	}
	l.conv(layer(enc, idx), c, latentChans, 3, true, 1)
}

func dims(ds ...int) []uint64 {
	out := make([]uint64, len(ds))
	for i, d := range ds {
		out[i] = uint64(d)
	}
	return out
}
