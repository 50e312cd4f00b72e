//go:build sdcpp

package main

/*
#cgo pkg-config: stable-diffusion stb libwebp
#include <stdlib.h>
#include "binding_sdcpp.h"
#if __has_include("stoker-sdcpp-build.h")
#include "stoker-sdcpp-build.h"
#else
#define STOKER_SDCPP_MISSING_VOCAB ""
#endif
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"unsafe"

	"github.com/stokerhq/stoker/plugins"
)

// This file holds every call into stable-diffusion.cpp (libstable-diffusion
// through cgo), libwebp and stb_image. The C side is in sdcpp_cgo.c.

var installCallbacks = sync.OnceFunc(func() { C.stoker_install_callbacks() })

func engineStatus() (ready bool, reason string) { return true, "" }

// missingVocabularies lists the tokenizer vocabularies this build of the
// engine lacks (empty stand-ins; see scripts/engines/sdcpp.sh).
func missingVocabularies() []string {
	return strings.Fields(C.STOKER_SDCPP_MISSING_VOCAB)
}

// systemInfo is stable-diffusion.cpp's own description of the build (CPU
// features, backends), for the log.
func systemInfo() string { return strings.TrimSpace(C.GoString(C.sd_get_system_info())) }

// engineSampleMethodName is the library's name for sampler i.
func engineSampleMethodName(i int) string {
	return C.GoString(C.sd_sample_method_name(C.enum_sample_method_t(i)))
}

// sdContext is a loaded stable-diffusion.cpp context: the weights of every
// model file, kept between jobs.
type sdContext struct {
	ctx *C.sd_ctx_t
}

// loadContext loads the files of key. The library reports why a load
// failed only through its log, so the job's observer collects the error
// lines.
func loadContext(key contextKey, threads int, obs *observer) (*sdContext, error) {
	installCallbacks()
	var strs cStrings
	defer strs.free()
	var p C.sd_ctx_params_t
	C.sd_ctx_params_init(&p)
	f := key.Files
	p.model_path = strs.get(f.Model)
	p.diffusion_model_path = strs.get(f.DiffusionModel)
	p.vae_path = strs.get(f.VAE)
	p.llm_path = strs.get(f.LLM)
	p.llm_vision_path = strs.get(f.LLMVision)
	// What sd-cli passes for the options it is not given, so that a job
	// and sd-cli make the same pixels.
	for _, field := range []**C.char{&p.clip_l_path, &p.clip_g_path, &p.clip_vision_path, &p.t5xxl_path,
		&p.high_noise_diffusion_model_path, &p.uncond_diffusion_model_path, &p.embeddings_connectors_path,
		&p.audio_vae_path, &p.taesd_path, &p.control_net_path, &p.ip_adapter_path, &p.motion_module_path,
		&p.photo_maker_path, &p.pulid_weights_path, &p.tensor_type_rules, &p.backend, &p.split_mode, &p.rpc_servers} {
		*field = strs.get("")
	}
	p.max_vram = strs.get("0")
	p.params_backend = strs.get("")
	if key.Options.OffloadToCPU {
		p.params_backend = strs.get("*=cpu") // sd-cli --offload-to-cpu
	}
	if key.Options.ZeroCondT {
		p.model_args = strs.get("qwen_image_zero_cond_t=true")
	}
	if threads > 0 {
		p.n_threads = C.int(threads)
	}
	p.diffusion_flash_attn = true // spec §6.5: always --diffusion-fa
	// Read every weight now rather than on first use (sd-cli's default),
	// so that a resident model's jobs never pay for loading and the load
	// is reported as such. The pixels are the same either way.
	p.eager_load = true

	if cs := C.sd_ctx_params_to_str(&p); cs != nil {
		obs.log.Debug("context parameters", "params", C.GoString(cs))
		C.free(unsafe.Pointer(cs))
	}
	obs.begin(phaseLoad)
	ctx := C.new_sd_ctx(&p)
	obs.end()
	if ctx == nil {
		return nil, obs.failure("load the model")
	}
	if !bool(C.sd_ctx_supports_image_generation(ctx)) {
		C.free_sd_ctx(ctx)
		return nil, plugins.Errorf(plugins.ErrBadInput, "the model cannot generate images (a video or other kind of model)")
	}
	return &sdContext{ctx: ctx}, nil
}

func (c *sdContext) free() {
	if c.ctx != nil {
		C.free_sd_ctx(c.ctx)
		c.ctx = nil
	}
}

// generate runs one generation of j with the images already loaded, and
// returns the first image (RGB). ctx cancels it within a sampling step.
func (c *sdContext) generate(ctx context.Context, j *job, imgs *jobImages, obs *observer) (*rgbImage, error) {
	var strs cStrings
	defer strs.free()
	var p C.sd_img_gen_params_t
	C.sd_img_gen_params_init(&p)
	p.prompt = strs.get(j.Prompt)
	p.negative_prompt = strs.get(j.NegativePrompt)
	p.width = C.int(j.Width)
	p.height = C.int(j.Height)
	p.seed = C.int64_t(j.Seed)
	p.strength = C.float(defaultStrength)
	p.sample_params.sample_steps = C.int(j.Steps)
	p.sample_params.guidance.txt_cfg = C.float(j.CfgScale)
	p.sample_params.sample_method = C.enum_sample_method_t(j.Sampler)
	p.sample_params.flow_shift = C.float(j.FlowShift)
	// sd-cli's default skip layers (inactive at its default scale 0).
	slg := (*[3]C.int)(C.malloc(C.size_t(3 * C.sizeof_int)))
	defer C.free(unsafe.Pointer(slg))
	slg[0], slg[1], slg[2] = 7, 8, 9
	p.sample_params.guidance.slg.layers = &slg[0]
	p.sample_params.guidance.slg.layer_count = 3

	var pins []unsafe.Pointer // C memory to free after the call
	defer func() {
		for _, ptr := range pins {
			C.free(ptr)
		}
	}()
	if len(j.LoRAs) > 0 {
		n := len(j.LoRAs)
		loras := (*C.sd_lora_t)(C.calloc(C.size_t(n), C.size_t(unsafe.Sizeof(C.sd_lora_t{}))))
		pins = append(pins, unsafe.Pointer(loras))
		ls := unsafe.Slice(loras, n)
		for i := range ls {
			ls[i].is_high_noise = false
			ls[i].multiplier = 1
			ls[i].path = strs.get(j.LoRAs[i])
		}
		p.loras = loras
		p.lora_count = C.uint32_t(n)
	}
	switch j.Mode {
	case modeImg2Img:
		p.init_image = imgs.init.sd()
		p.strength = C.float(j.Strength)
	case modeEdit:
		ref := (*C.sd_image_t)(C.malloc(C.size_t(unsafe.Sizeof(C.sd_image_t{}))))
		pins = append(pins, unsafe.Pointer(ref))
		*ref = imgs.ref.sd()
		p.ref_images = ref
		p.ref_images_count = 1
	}
	// sd-cli always passes a mask: the given one, or all white.
	p.mask_image = imgs.mask.sd()

	if cs := C.sd_img_gen_params_to_str(&p); cs != nil {
		obs.log.Debug("generation parameters", "params", C.GoString(cs))
		C.free(unsafe.Pointer(cs))
	}
	// A cancellation asks the engine to stop at its next step. generate_image
	// clears a request made before it starts, so the observer repeats it at
	// every step once ctx is done; and the call from AfterFunc is waited
	// for, so it never reaches a context freed after this job.
	cancelEngine := func() { C.sd_cancel_generation(c.ctx, C.SD_CANCEL_ALL) }
	cancelled := make(chan struct{})
	stop := context.AfterFunc(ctx, func() { defer close(cancelled); cancelEngine() })
	defer func() {
		if !stop() {
			<-cancelled
		}
	}()
	obs.cancel, obs.done = cancelEngine, ctx.Done()
	obs.begin(phaseSample)
	img := C.stoker_generate(c.ctx, &p)
	obs.end()
	if img == nil {
		if err := ctx.Err(); err != nil {
			return nil, plugins.Cancelled(err)
		}
		if err := obs.stopped(); err != nil {
			return nil, err
		}
		return nil, obs.failure("generate the image")
	}
	defer C.stoker_free_image(img)
	if err := ctx.Err(); err != nil {
		// Cancelled after the last check inside the engine.
		return nil, plugins.Cancelled(err)
	}
	if img.channel != 3 || img.data == nil {
		return nil, fmt.Errorf("engine returned an image with %d channels", img.channel)
	}
	n := int(img.width) * int(img.height) * 3
	return &rgbImage{
		Width: int(img.width), Height: int(img.height), Channels: 3,
		Pix: C.GoBytes(unsafe.Pointer(img.data), C.int(n)),
	}, nil
}

// sd returns an sd_image_t viewing the pixels of m, pinned in C memory for
// the generation (the engine keeps no reference after it returns).
func (m *rgbImage) sd() C.sd_image_t {
	if m == nil {
		return C.sd_image_t{}
	}
	return C.sd_image_t{
		width:   C.uint32_t(m.Width),
		height:  C.uint32_t(m.Height),
		channel: C.uint32_t(m.Channels),
		data:    (*C.uint8_t)(m.cpix),
	}
}

// loadImage reads an input image as sd-cli does (see stoker_load_image):
// channels 3 for init and reference images, 1 for masks; w, h > 0 resize
// to that size. The pixels live in C memory until release.
func loadImage(path string, w, h, channels int) (*rgbImage, error) {
	cp := C.CString(path)
	defer C.free(unsafe.Pointer(cp))
	var errbuf [256]C.char
	var iw, ih C.int
	px := C.stoker_load_image(cp, C.int(w), C.int(h), C.int(channels), &iw, &ih, &errbuf[0], C.int(len(errbuf)))
	if px == nil {
		return nil, errors.New(C.GoString(&errbuf[0]))
	}
	return &rgbImage{Width: int(iw), Height: int(ih), Channels: channels, cpix: unsafe.Pointer(px)}, nil
}

// whiteMask is an all-white mask of w×h in C memory, what sd-cli passes
// without --mask.
func whiteMask(w, h int) *rgbImage {
	n := w * h
	px := C.malloc(C.size_t(n))
	b := unsafe.Slice((*byte)(px), n)
	for i := range b {
		b[i] = 255
	}
	return &rgbImage{Width: w, Height: h, Channels: 1, cpix: px}
}

// release frees C-held pixels.
func (m *rgbImage) release() {
	if m != nil && m.cpix != nil {
		C.free(m.cpix)
		m.cpix = nil
	}
}

// encodeWebP encodes m as sd-cli writes .webp (libwebp, lossy, quality q),
// without sd-cli's metadata chunk.
func encodeWebP(m *rgbImage, quality float32) ([]byte, error) {
	if m.Channels != 3 || len(m.Pix) != m.Width*m.Height*3 {
		return nil, errors.New("encodeWebP: not an RGB image")
	}
	var out *C.uint8_t
	n := C.stoker_encode_webp((*C.uint8_t)(unsafe.Pointer(&m.Pix[0])), C.int(m.Width), C.int(m.Height), C.float(quality), &out)
	if n == 0 || out == nil {
		return nil, errors.New("libwebp could not encode the image")
	}
	defer C.stoker_webp_free(out)
	return C.GoBytes(unsafe.Pointer(out), C.int(n)), nil
}

// cStrings hands Go strings to C for the length of one call.
type cStrings []*C.char

func (s *cStrings) get(v string) *C.char {
	c := C.CString(v)
	*s = append(*s, c)
	return c
}

func (s *cStrings) free() {
	for _, c := range *s {
		C.free(unsafe.Pointer(c))
	}
	*s = nil
}
