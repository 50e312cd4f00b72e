package main

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/stokerhq/stoker/plugins"
)

// This file turns a RunRequest into what stable-diffusion.cpp is given: the
// model files by role (spec §6.5's flag table) and the generation
// parameters with the reference's resolution precedence. It is pure Go, so
// every rule is table-tested without the engine.

// The sample methods stable-diffusion.cpp knows, by the names sd-cli takes
// for --sampling-method, in the order of its enum sample_method_t (the index
// is the enum value). Checked against the library's own names at start-up
// in the sdcpp build (TestSampleMethodNamesMatchEngine).
var sampleMethods = []string{
	"euler", "euler_a", "heun", "dpm2", "dpm++2s_a", "dpm++2m", "dpm++2mv2",
	"ipndm", "ipndm_v", "lcm", "ddim_trailing", "tcd", "res_multistep", "res_2s",
	"er_sde", "euler_cfg_pp", "euler_a_cfg_pp", "euler_ge", "dpm++2m_sde",
	"dpm++2m_sde_bt", "lms",
}

// sampleMethodIndex returns the enum value of a sampler name, or -1. The
// name is matched as sd-cli matches it (exactly, lower case).
func sampleMethodIndex(name string) int { return slices.Index(sampleMethods, name) }

// The reference's fallbacks when neither the task nor cliDefaults give a
// value (spec §6.5).
const (
	fallbackSide    = 1024
	fallbackSteps   = 8
	fallbackCfg     = 1.0
	unsetSteps      = 20 // spec I-24: a task's 20 steps means "not chosen"
	defaultStrength = 0.75
)

// modelFiles are a job's model files by the role stable-diffusion.cpp gives
// them. They, with the options in ctxOptions, identify a loaded context.
type modelFiles struct {
	DiffusionModel string // --diffusion-model (diffusion-model role)
	Model          string // --model (a full checkpoint; only without a diffusion model)
	VAE            string // --vae
	LLM            string // --llm (text-encoder role)
	LLMVision      string // --llm_vision (text-encoder-vision role)
}

// ctxOptions are the context options that change what a load produces.
type ctxOptions struct {
	OffloadToCPU bool // cliDefaults.offloadToCpu: weights kept in RAM
	ZeroCondT    bool // cliDefaults.zeroCondT: Qwen Image's zero_cond_t
}

// contextKey identifies a loaded context: the files and the options that
// shape it. LoRAs are not part of it: stable-diffusion.cpp applies and
// removes them per generation on the loaded weights.
type contextKey struct {
	Files   modelFiles
	Options ctxOptions
}

func (k contextKey) String() string {
	return fmt.Sprintf("diffusion=%q model=%q vae=%q llm=%q llm_vision=%q offload=%t zero_cond_t=%t",
		k.Files.DiffusionModel, k.Files.Model, k.Files.VAE, k.Files.LLM, k.Files.LLMVision,
		k.Options.OffloadToCPU, k.Options.ZeroCondT)
}

// paths lists the key's model files, for sizing and checks.
func (k contextKey) paths() []string {
	var out []string
	for _, p := range []string{k.Files.DiffusionModel, k.Files.Model, k.Files.VAE, k.Files.LLM, k.Files.LLMVision} {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

// mode is how the job uses its input images.
type mode int

const (
	modeTxt2Img mode = iota
	modeImg2Img      // init image, with strength (and mask: inpainting)
	modeEdit         // reference image (instruction-edit models), no strength
)

func (m mode) String() string {
	return [...]string{"txt2img", "img2img", "edit"}[m]
}

// job is one resolved generation.
type job struct {
	Key            contextKey
	LoRAs          []string
	Mode           mode
	Prompt         string
	NegativePrompt string
	Width, Height  int
	Steps          int
	CfgScale       float32
	Sampler        int // sample_method_t; len(sampleMethods) = the model's default
	FlowShift      float32
	Seed           int64
	SeedChosen     bool    // false: Seed was drawn at random
	Strength       float32 // img2img only
	InitImage      string  // path, img2img
	RefImage       string  // path, edit
	Mask           string  // path, with a base image only
	Ext            string  // "webp" or "png"
}

// limits bound what one job may ask of the node. A job beyond them fails
// node_limit (retryable: a bigger node may serve it) with the limit named;
// an operator raises them for bigger nodes.
type limits struct {
	MaxSide       int   // largest width or height in pixels
	MaxPixelSteps int64 // width × height × steps
}

// defaultLimits: 4096 px a side covers every model stable-diffusion.cpp
// serves today; 2048×2048 at 100 steps (about 419M pixel-steps) is several
// times what a real job asks (1024×1024 at 50 steps is 52M) while it keeps
// a hostile job from holding a GPU for hours.
var defaultLimits = limits{MaxSide: 4096, MaxPixelSteps: 2048 * 2048 * 100}

// resolve builds the job for req, or a bad_input error that says what is
// wrong. randomSeed supplies a seed when the task has none.
func resolve(req *plugins.RunRequest, lim limits, randomSeed func() int64) (*job, error) {
	if req.Task.Kind != plugins.KindImage || req.Task.Image == nil {
		return nil, plugins.Errorf(plugins.ErrUnsupported, "cannot serve %s: the sd-cpp engine serves image", req.Task.Kind)
	}
	if req.Engine != "" && req.Engine != engineID {
		return nil, plugins.Errorf(plugins.ErrUnsupported, "cannot serve engine %q: this plugin is %s", req.Engine, engineID)
	}
	t := req.Task.Image
	d := req.Defaults
	j := &job{Prompt: t.Prompt, NegativePrompt: t.NegativePrompt}

	// Files by role (spec §6.5): a diffusion model wins over a checkpoint.
	f := &j.Key.Files
	f.DiffusionModel = req.File("diffusion-model")
	if f.DiffusionModel == "" {
		f.Model = req.File("model")
	}
	if f.DiffusionModel == "" && f.Model == "" {
		return nil, plugins.Errorf(plugins.ErrBadInput, "no diffusion-model / model file")
	}
	f.VAE = req.File("vae")
	f.LLM = req.File("text-encoder")
	f.LLMVision = req.File("text-encoder-vision")
	for _, mf := range req.Files {
		if mf.Role == "lora" {
			j.LoRAs = append(j.LoRAs, mf.Path)
		}
	}
	j.Key.Options = ctxOptions{OffloadToCPU: d.OffloadToCPU, ZeroCondT: d.ZeroCondT}

	// Sizes, steps, cfg and sampler: task, then cliDefaults, then the
	// reference's fallback.
	j.Width = int(firstPositive(t.Width, d.Width, fallbackSide))
	j.Height = int(firstPositive(t.Height, d.Height, fallbackSide))
	steps := t.Steps
	if steps == unsetSteps {
		steps = 0
	}
	j.Steps = int(firstPositive(steps, d.Steps, fallbackSteps))
	j.CfgScale = fallbackCfg
	switch {
	case t.CfgScale > 0:
		j.CfgScale = t.CfgScale
	case d.CfgScale > 0:
		j.CfgScale = d.CfgScale
	}
	if math.IsNaN(float64(j.CfgScale)) || math.IsInf(float64(j.CfgScale), 0) {
		return nil, plugins.Errorf(plugins.ErrBadInput, "cfgScale %v is not a number", j.CfgScale)
	}
	j.Sampler = len(sampleMethods)
	if name := cmp.Or(t.SamplingMethod, d.SamplingMethod); name != "" {
		if j.Sampler = sampleMethodIndex(name); j.Sampler < 0 {
			return nil, plugins.Errorf(plugins.ErrBadInput, "unknown samplingMethod %q (known: %s)", name, strings.Join(sampleMethods, ", "))
		}
	}
	j.FlowShift = float32(math.Inf(1)) // the model's own
	if d.FlowShift != nil {
		j.FlowShift = *d.FlowShift
	}
	if err := lim.check(j.Width, j.Height, j.Steps); err != nil {
		return nil, err
	}

	if t.Seed != nil {
		if *t.Seed > math.MaxInt64 {
			return nil, plugins.Errorf(plugins.ErrBadInput, "seed %d is above 2^63-1, the largest stable-diffusion.cpp takes", *t.Seed)
		}
		j.Seed, j.SeedChosen = int64(*t.Seed), true
	} else {
		j.Seed = randomSeed()
	}

	// Images (spec §6.5): a reference image wins over an init image; a
	// mask applies only with one of them.
	in := req.Inputs
	switch {
	case in.RefImage != "":
		j.Mode, j.RefImage = modeEdit, in.RefImage
	case in.InitImage != "":
		j.Mode, j.InitImage = modeImg2Img, in.InitImage
		j.Strength = defaultStrength
		if t.Denoise != nil {
			j.Strength = *t.Denoise
		}
		if !(j.Strength >= 0 && j.Strength <= 1) {
			return nil, plugins.Errorf(plugins.ErrBadInput, "denoise %v is outside [0, 1]", j.Strength)
		}
	}
	if j.Mode != modeTxt2Img {
		j.Mask = in.Mask
	}

	switch strings.ToLower(t.Ext) {
	case "png":
		j.Ext = "png"
	case "", "webp":
		j.Ext = "webp"
	default:
		// The reference always answers webp (spec §6.2); so does this
		// plugin for any extension it does not make.
		j.Ext = "webp"
	}
	return j, nil
}

// check refuses sizes the engine cannot take and jobs beyond the limits.
func (l limits) check(w, h, steps int) error {
	// The VAE works in blocks of 8 pixels: stable-diffusion.cpp would
	// silently enlarge any other size (and answer an image of another
	// size than asked for).
	if w < 64 || h < 64 || w%8 != 0 || h%8 != 0 {
		return plugins.Errorf(plugins.ErrBadInput, "image size %dx%d: width and height must be multiples of 8, at least 64", w, h)
	}
	if w > l.MaxSide || h > l.MaxSide {
		return plugins.Errorf(plugins.ErrNodeLimit, "image size %dx%d is beyond this node's limit of %d pixels a side", w, h, l.MaxSide)
	}
	if steps > 10000 || int64(w)*int64(h)*int64(steps) > l.MaxPixelSteps {
		return plugins.Errorf(plugins.ErrNodeLimit, "%dx%d at %d steps is beyond this node's limit of %d pixel-steps", w, h, steps, l.MaxPixelSteps)
	}
	return nil
}

// firstPositive returns the first value above zero.
func firstPositive(vs ...uint32) uint32 {
	for _, v := range vs {
		if v > 0 {
			return v
		}
	}
	return 0
}
