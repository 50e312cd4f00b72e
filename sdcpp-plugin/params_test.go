package main

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/stokerhq/stoker/plugins"
)

func ptr[T any](v T) *T { return &v }

// imageRequest is a txt2img request on one checkpoint file; tests change
// what they need.
func imageRequest(task plugins.ImageTask) *plugins.RunRequest {
	if task.Prompt == "" {
		task.Prompt = "a lighthouse"
	}
	return &plugins.RunRequest{
		JobID: "job-1", Model: "m", Engine: engineID,
		Task:  plugins.Task{Kind: plugins.KindImage, Image: &task},
		Files: []plugins.ModelFile{{Role: "model", Path: "/models/ckpt.gguf"}},
	}
}

func fixedSeed() int64 { return 777 }

func TestResolveFilesByRole(t *testing.T) {
	req := imageRequest(plugins.ImageTask{Width: 512, Height: 512})
	req.Files = []plugins.ModelFile{
		{Role: "model", Path: "/m/ckpt.gguf"},
		{Role: "diffusion-model", Path: "/m/unet.gguf"},
		{Role: "vae", Path: "/m/vae.safetensors"},
		{Role: "text-encoder", Path: "/m/qwen.gguf"},
		{Role: "text-encoder-vision", Path: "/m/mmproj.gguf"},
		{Role: "lora", Path: "/m/a.safetensors"},
		{Role: "lora", Path: "/m/b.safetensors"},
	}
	j, err := resolve(req, defaultLimits, fixedSeed)
	if err != nil {
		t.Fatal(err)
	}
	want := modelFiles{DiffusionModel: "/m/unet.gguf", VAE: "/m/vae.safetensors", LLM: "/m/qwen.gguf", LLMVision: "/m/mmproj.gguf"}
	if j.Key.Files != want {
		t.Errorf("files = %+v, want %+v (a diffusion model wins over a checkpoint)", j.Key.Files, want)
	}
	if strings.Join(j.LoRAs, ",") != "/m/a.safetensors,/m/b.safetensors" {
		t.Errorf("loras = %v", j.LoRAs)
	}

	req.Files = req.Files[:1]
	if j, err = resolve(req, defaultLimits, fixedSeed); err != nil || j.Key.Files.Model != "/m/ckpt.gguf" {
		t.Errorf("checkpoint only: %+v, %v", j, err)
	}

	req.Files = []plugins.ModelFile{{Role: "vae", Path: "/m/vae.safetensors"}}
	_, err = resolve(req, defaultLimits, fixedSeed)
	expectKind(t, err, plugins.ErrBadInput, "no diffusion-model / model file")
}

func TestResolvePrecedence(t *testing.T) {
	shift := float32(3)
	cases := []struct {
		name     string
		task     plugins.ImageTask
		defaults plugins.Defaults
		w, h     int
		steps    int
		cfg      float32
		sampler  string
	}{
		{"task wins", plugins.ImageTask{Width: 640, Height: 384, Steps: 12, CfgScale: 4.5, SamplingMethod: "dpm++2m"},
			plugins.Defaults{Width: 1024, Height: 1024, Steps: 8, CfgScale: 1, SamplingMethod: "euler"}, 640, 384, 12, 4.5, "dpm++2m"},
		{"defaults when the task has none", plugins.ImageTask{},
			plugins.Defaults{Width: 768, Height: 512, Steps: 8, CfgScale: 2, SamplingMethod: "euler"}, 768, 512, 8, 2, "euler"},
		{"20 steps means unset (I-24)", plugins.ImageTask{Width: 512, Height: 512, Steps: 20},
			plugins.Defaults{Steps: 4}, 512, 512, 4, 1, ""},
		{"fallbacks", plugins.ImageTask{}, plugins.Defaults{}, 1024, 1024, 8, 1, ""},
		{"21 steps is a choice", plugins.ImageTask{Width: 64, Height: 64, Steps: 21}, plugins.Defaults{Steps: 4}, 64, 64, 21, 1, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := imageRequest(c.task)
			req.Defaults = c.defaults
			req.Defaults.FlowShift = &shift
			j, err := resolve(req, defaultLimits, fixedSeed)
			if err != nil {
				t.Fatal(err)
			}
			if j.Width != c.w || j.Height != c.h || j.Steps != c.steps || j.CfgScale != c.cfg {
				t.Errorf("got %dx%d %d steps cfg %v, want %dx%d %d steps cfg %v", j.Width, j.Height, j.Steps, j.CfgScale, c.w, c.h, c.steps, c.cfg)
			}
			wantSampler := len(sampleMethods)
			if c.sampler != "" {
				wantSampler = sampleMethodIndex(c.sampler)
			}
			if j.Sampler != wantSampler {
				t.Errorf("sampler = %d, want %d (%q)", j.Sampler, wantSampler, c.sampler)
			}
			if j.FlowShift != 3 {
				t.Errorf("flow shift = %v, want 3", j.FlowShift)
			}
		})
	}
}

func TestResolveOptionsAndSeed(t *testing.T) {
	req := imageRequest(plugins.ImageTask{Width: 64, Height: 64})
	req.Defaults = plugins.Defaults{OffloadToCPU: true, ZeroCondT: true}
	j, err := resolve(req, defaultLimits, fixedSeed)
	if err != nil {
		t.Fatal(err)
	}
	if !j.Key.Options.OffloadToCPU || !j.Key.Options.ZeroCondT {
		t.Errorf("options = %+v", j.Key.Options)
	}
	if j.Seed != 777 || j.SeedChosen {
		t.Errorf("no seed: got %d chosen=%t, want the random 777", j.Seed, j.SeedChosen)
	}
	if !math.IsInf(float64(j.FlowShift), 1) {
		t.Errorf("flow shift without a default = %v, want +Inf (the model's own)", j.FlowShift)
	}
	other := *j
	other.Key.Options.OffloadToCPU = false
	if other.Key.String() == j.Key.String() {
		t.Error("offloadToCpu does not change the context key")
	}

	req.Task.Image.Seed = ptr(uint64(0))
	if j, err = resolve(req, defaultLimits, fixedSeed); err != nil || j.Seed != 0 || !j.SeedChosen {
		t.Errorf("seed 0: %+v %v", j, err)
	}
	req.Task.Image.Seed = ptr(uint64(math.MaxUint64))
	_, err = resolve(req, defaultLimits, fixedSeed)
	expectKind(t, err, plugins.ErrBadInput, "seed")
}

func TestResolveModes(t *testing.T) {
	req := imageRequest(plugins.ImageTask{Width: 64, Height: 64})
	req.Inputs = plugins.Inputs{Mask: "/in/mask.png"}
	j, _ := resolve(req, defaultLimits, fixedSeed)
	if j.Mode != modeTxt2Img || j.Mask != "" {
		t.Errorf("mask without a base image: mode %v mask %q, want txt2img without mask", j.Mode, j.Mask)
	}

	req.Inputs = plugins.Inputs{InitImage: "/in/init.png", Mask: "/in/mask.png"}
	j, _ = resolve(req, defaultLimits, fixedSeed)
	if j.Mode != modeImg2Img || j.InitImage != "/in/init.png" || j.Mask != "/in/mask.png" || j.Strength != 0.75 {
		t.Errorf("img2img: %+v", j)
	}
	req.Task.Image.Denoise = ptr(float32(0.4))
	if j, _ = resolve(req, defaultLimits, fixedSeed); j.Strength != 0.4 {
		t.Errorf("denoise 0.4: strength %v", j.Strength)
	}
	req.Task.Image.Denoise = ptr(float32(1.5))
	_, err := resolve(req, defaultLimits, fixedSeed)
	expectKind(t, err, plugins.ErrBadInput, "denoise")
	req.Task.Image.Denoise = nil

	req.Inputs.RefImage = "/in/ref.png"
	j, _ = resolve(req, defaultLimits, fixedSeed)
	if j.Mode != modeEdit || j.RefImage != "/in/ref.png" || j.InitImage != "" || j.Mask != "/in/mask.png" {
		t.Errorf("a reference image wins over an init image: %+v", j)
	}
}

func TestResolveRefuses(t *testing.T) {
	lim := limits{MaxSide: 1024, MaxPixelSteps: 512 * 512 * 10}
	cases := []struct {
		name string
		task plugins.ImageTask
		kind plugins.ErrorKind
		want string
	}{
		{"not a multiple of 8", plugins.ImageTask{Width: 100, Height: 64}, plugins.ErrBadInput, "multiples of 8"},
		{"too small", plugins.ImageTask{Width: 32, Height: 64}, plugins.ErrBadInput, "at least 64"},
		// This node's limits: retryable, a bigger node may serve the job.
		{"side beyond the limit", plugins.ImageTask{Width: 2048, Height: 64}, plugins.ErrNodeLimit, "1024 pixels a side"},
		{"pixel-steps beyond the limit", plugins.ImageTask{Width: 1024, Height: 1024, Steps: 30}, plugins.ErrNodeLimit, "pixel-steps"},
		{"unknown sampler", plugins.ImageTask{Width: 64, Height: 64, SamplingMethod: "warp_drive"}, plugins.ErrBadInput, "unknown samplingMethod"},
		{"cfg not a number", plugins.ImageTask{Width: 64, Height: 64, CfgScale: float32(math.Inf(1))}, plugins.ErrBadInput, "cfgScale"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := resolve(imageRequest(c.task), lim, fixedSeed)
			expectKind(t, err, c.kind, c.want)
		})
	}

	req := imageRequest(plugins.ImageTask{})
	req.Task = plugins.Task{Kind: plugins.KindLLM, LLM: &plugins.LLMTask{}}
	_, err := resolve(req, lim, fixedSeed)
	expectKind(t, err, plugins.ErrUnsupported, "cannot serve llm")
	req = imageRequest(plugins.ImageTask{Width: 64, Height: 64})
	req.Engine = "llama-cpp"
	_, err = resolve(req, lim, fixedSeed)
	expectKind(t, err, plugins.ErrUnsupported, "cannot serve engine")
}

func TestResolveExt(t *testing.T) {
	for ext, want := range map[string]string{"": "webp", "webp": "webp", "png": "png", "PNG": "png", "jpg": "webp"} {
		j, err := resolve(imageRequest(plugins.ImageTask{Width: 64, Height: 64, Ext: ext}), defaultLimits, fixedSeed)
		if err != nil || j.Ext != want {
			t.Errorf("ext %q: got %q, %v; want %q", ext, j.Ext, err, want)
		}
	}
}

func TestOptionsFromEnv(t *testing.T) {
	env := map[string]string{envThreads: "3", envMemoryBudget: "512", envMaxSide: "2048", envMaxPixelSteps: "1000000"}
	o, err := optionsFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if o.Threads != 3 || o.MemoryBudget != 512<<20 || o.Limits.MaxSide != 2048 || o.Limits.MaxPixelSteps != 1000000 {
		t.Errorf("options = %+v", o)
	}
	o, err = optionsFromEnv(func(string) string { return "" })
	if err != nil || o.MemoryBudget != defaultMemoryBudget || o.Limits != defaultLimits || o.Threads != 0 {
		t.Errorf("defaults = %+v, %v", o, err)
	}
	env = map[string]string{envThreads: "lots", envMemoryBudget: "-1"}
	_, err = optionsFromEnv(func(k string) string { return env[k] })
	if err == nil || !strings.Contains(err.Error(), envThreads) || !strings.Contains(err.Error(), envMemoryBudget) {
		t.Errorf("malformed settings: %v, want both named", err)
	}
}

// expectKind fails unless err is a *plugins.JobError of kind whose message
// contains want.
func expectKind(t *testing.T, err error, kind plugins.ErrorKind, want string) {
	t.Helper()
	var je *plugins.JobError
	if !errors.As(err, &je) {
		t.Fatalf("error = %v, want a %s job error", err, kind)
	}
	if je.Kind != kind || !strings.Contains(je.Message, want) {
		t.Fatalf("error = %s %q, want %s containing %q", je.Kind, je.Message, kind, want)
	}
}
