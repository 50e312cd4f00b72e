//go:build sdcpp

package main

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/stokerhq/stoker/llamacpp-plugin/gguf"
	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/plugins/plugintest"
	"github.com/stokerhq/stoker/sdcpp-plugin/sdmodel"
)

// These tests run the real stable-diffusion.cpp on the tiny-sd model that
// sdmodel generates, and compare with sd-cli from the same build. They
// fail, never skip, when the engine or sd-cli is missing.

var testDir string // removed after the tests

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sdcpp-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var tiny struct {
	once sync.Once
	path string
	err  error
}

// tinyModel returns the path of tiny-sd, written once for the whole run.
func tinyModel(t testing.TB) string {
	t.Helper()
	tiny.once.Do(func() {
		tiny.path = filepath.Join(testDir, sdmodel.TinySDFilename)
		f, err := os.Create(tiny.path)
		if err != nil {
			tiny.err = err
			return
		}
		if err := sdmodel.WriteTinySD(f); err != nil {
			f.Close()
			tiny.err = err
			return
		}
		tiny.err = f.Close()
	})
	if tiny.err != nil {
		t.Fatalf("writing tiny-sd: %v", tiny.err)
	}
	return tiny.path
}

// sdCLI is sd-cli from the same build as the library.
func sdCLI(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("pkg-config", "--variable=cli", "stable-diffusion").Output()
	path := strings.TrimSpace(string(out))
	if err != nil || path == "" {
		t.Fatalf("pkg-config --variable=cli stable-diffusion: %v (run scripts/install-engines.sh and source scripts/engines/env.sh)", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("sd-cli: %v", err)
	}
	return path
}

func testEngine(t testing.TB, o options) *engine {
	t.Helper()
	e := newEngine(hclog.New(&hclog.LoggerOptions{Name: "sdcpp-test", Level: hclog.Warn, Output: os.Stderr}), o)
	t.Cleanup(e.Close)
	return e
}

// tinyRequest is a tiny-sd job: 64×64, 2 steps, seeded.
func tinyRequest(t testing.TB, prompt string, seed uint64, ext string) *plugins.RunRequest {
	return &plugins.RunRequest{
		JobID: "job", Model: "tiny-sd", Engine: engineID,
		Task: plugins.Task{Kind: plugins.KindImage, Image: &plugins.ImageTask{
			Prompt: prompt, Width: 64, Height: 64, Steps: 2, Seed: &seed, Ext: ext, CfgScale: 1,
		}},
		Files: []plugins.ModelFile{{Role: "model", Path: tinyModel(t)}},
	}
}

// generate runs req and returns the output, failing on any error.
func generate(t testing.TB, e plugins.Engine, req *plugins.RunRequest) (string, []byte, *plugintest.Recorder) {
	t.Helper()
	rec, err := plugintest.Run(context.Background(), e, req)
	if err != nil {
		t.Fatalf("Run(%q): %v", req.Task.Prompt(), err)
	}
	ext, data := rec.OutputBytes()
	if len(data) == 0 {
		t.Fatalf("Run(%q): no output", req.Task.Prompt())
	}
	return ext, data, rec
}

// decodePixels decodes a PNG into 8-bit RGB.
func decodePixels(t testing.TB, b []byte) (w, h int, rgb []byte) {
	t.Helper()
	m, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("decode png: %v", err)
	}
	r := m.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			c := color.NRGBAModel.Convert(m.At(x, y)).(color.NRGBA)
			rgb = append(rgb, c.R, c.G, c.B)
		}
	}
	return r.Dx(), r.Dy(), rgb
}

// meanAbsDiff is the mean absolute difference of two pixel buffers.
func meanAbsDiff(a, b []byte) float64 {
	if len(a) != len(b) || len(a) == 0 {
		return math.Inf(1)
	}
	var s float64
	for i := range a {
		s += math.Abs(float64(a[i]) - float64(b[i]))
	}
	return s / float64(len(a))
}

// writePNG writes an image made by at(x, y) into the test directory.
func writePNG(t testing.TB, dir, name string, w, h int, gray bool, at func(x, y int) color.NRGBA) string {
	t.Helper()
	var img image.Image
	if gray {
		g := image.NewGray(image.Rect(0, 0, w, h))
		for y := range h {
			for x := range w {
				g.SetGray(x, y, color.Gray{Y: at(x, y).R})
			}
		}
		img = g
	} else {
		n := image.NewNRGBA(image.Rect(0, 0, w, h))
		for y := range h {
			for x := range w {
				n.SetNRGBA(x, y, at(x, y))
			}
		}
		img = n
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// runCLI runs sd-cli with args plus the output path and returns the file
// it wrote.
func runCLI(t testing.TB, out string, args ...string) []byte {
	t.Helper()
	args = append(args, "--disable-image-metadata", "-o", out)
	cmd := exec.Command(sdCLI(t), args...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sd-cli %s: %v\n%s", strings.Join(args, " "), err, lastLines(string(b), 15))
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// cliArgs is the sd-cli argument list spec §6.5 builds for req (resolved
// by the plugin's own rules), for the parity tests.
func cliArgs(t testing.TB, req *plugins.RunRequest) []string {
	t.Helper()
	j, err := resolve(req, defaultLimits, func() int64 { return 1 })
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"-m", j.Key.Files.Model, "-p", j.Prompt}
	if j.NegativePrompt != "" {
		args = append(args, "--negative-prompt", j.NegativePrompt)
	}
	switch j.Mode {
	case modeEdit:
		args = append(args, "-r", j.RefImage)
	case modeImg2Img:
		args = append(args, "--init-img", j.InitImage, "--strength", fmt.Sprint(j.Strength))
	}
	if j.Mask != "" {
		args = append(args, "--mask", j.Mask)
	}
	args = append(args, "--cfg-scale", fmt.Sprint(j.CfgScale), "--steps", fmt.Sprint(j.Steps),
		"-W", fmt.Sprint(j.Width), "-H", fmt.Sprint(j.Height), "--seed", fmt.Sprint(j.Seed), "--diffusion-fa")
	if j.Sampler < len(sampleMethods) {
		args = append(args, "--sampling-method", sampleMethods[j.Sampler])
	}
	return args
}

// TestParityWithSDCLI: the plugin's images are sd-cli's, pixel for pixel
// (PNG) and byte for byte (WebP: the same libwebp at the same quality), for
// txt2img, img2img with a strength, and inpainting with a mask.
func TestParityWithSDCLI(t *testing.T) {
	dir := t.TempDir()
	e := testEngine(t, options{})
	init := writePNG(t, dir, "init.png", 64, 64, false, func(x, y int) color.NRGBA {
		return color.NRGBA{uint8(x * 4), uint8(y * 4), uint8(255 - x*2), 255}
	})
	mask := writePNG(t, dir, "mask.png", 64, 64, true, func(x, y int) color.NRGBA {
		if x >= 32 {
			return color.NRGBA{R: 255}
		}
		return color.NRGBA{}
	})
	denoise := float32(0.6)
	cases := []struct {
		name   string
		change func(*plugins.RunRequest)
	}{
		{"txt2img", func(r *plugins.RunRequest) {}},
		{"img2img", func(r *plugins.RunRequest) {
			r.Inputs.InitImage = init
			r.Task.Image.Denoise = &denoise
		}},
		{"inpaint", func(r *plugins.RunRequest) {
			r.Inputs.InitImage = init
			r.Inputs.Mask = mask
		}},
	}
	pixels := map[string][]byte{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, ext := range []string{"png", "webp"} {
				req := tinyRequest(t, "a lighthouse on a cliff at dusk", 1234, ext)
				req.Task.Image.NegativePrompt = "fog"
				req.Task.Image.CfgScale = 2.5
				req.Task.Image.Steps = 4
				req.Task.Image.SamplingMethod = "euler_a"
				c.change(req)
				gotExt, got, rec := generate(t, e, req)
				if gotExt != ext {
					t.Fatalf("ext = %q, want %q", gotExt, ext)
				}
				want := runCLI(t, filepath.Join(dir, c.name+"."+ext), cliArgs(t, req)...)
				if ext == "webp" {
					if !bytes.Equal(got, want) {
						t.Errorf("WebP differs from sd-cli's: %d bytes vs %d", len(got), len(want))
					}
					continue
				}
				gw, gh, gp := decodePixels(t, got)
				ww, wh, wp := decodePixels(t, want)
				if gw != ww || gh != wh || !bytes.Equal(gp, wp) {
					t.Errorf("pixels differ from sd-cli's: %dx%d vs %dx%d, mean abs diff %.2f", gw, gh, ww, wh, meanAbsDiff(gp, wp))
				}
				pixels[c.name] = gp
				if steps := stepEvents(rec); steps == 0 {
					t.Errorf("no sampling progress: %v", rec.Events())
				}
			}
		})
	}
	// The inputs matter: each mode makes another image.
	if meanAbsDiff(pixels["txt2img"], pixels["img2img"]) < 1 || meanAbsDiff(pixels["img2img"], pixels["inpaint"]) < 0.5 {
		t.Errorf("modes make (nearly) the same image: txt2img~img2img %.2f, img2img~inpaint %.2f",
			meanAbsDiff(pixels["txt2img"], pixels["img2img"]), meanAbsDiff(pixels["img2img"], pixels["inpaint"]))
	}
}

func stepEvents(rec *plugintest.Recorder) int {
	n := 0
	for _, p := range rec.Events() {
		if p.Unit == unitStep && p.Step > 0 {
			n++
		}
	}
	return n
}

// tensorDims returns the dims (ggml order) of a tensor of the GGUF at path.
func tensorDims(t testing.TB, path, name string) []uint64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, err := gguf.ReadHeader(io.LimitReader(f, 64<<20))
	if err != nil {
		t.Fatal(err)
	}
	for _, ts := range h.Tensors {
		if ts.Name == name {
			return ts.Dims
		}
	}
	t.Fatalf("%s has no tensor %s", path, name)
	return nil
}

// TestLoRAParity: a LoRA given as a lora-role file is applied as sd-cli
// applies <lora:name:1>, and changes the image.
func TestLoRAParity(t *testing.T) {
	dir := t.TempDir()
	model := tinyModel(t)
	const target = "model.diffusion_model.input_blocks.4.1.proj_in.weight"
	d := tensorDims(t, model, target) // ggml order: in, out; or 1, 1, in, out for a 1×1 conv
	in, out := int(d[0]), int(d[1])
	if len(d) == 4 {
		in, out = int(d[2]), int(d[3])
	}
	const rank = 4
	fill := func(n int, scale float32) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = scale * float32(math.Sin(float64(i)*0.37))
		}
		return v
	}
	shape := func(rows, cols int) []int {
		if len(d) == 4 {
			return []int{rows, cols, 1, 1}
		}
		return []int{rows, cols}
	}
	base := "lora.diffusion_model.input_blocks.4.1.proj_in"
	loraPath := writeSafetensors(t, dir, "glow.safetensors", []stTensor{
		{Name: base + ".lora_down.weight", Shape: shape(rank, in), Data: fill(rank*in, 0.5)},
		{Name: base + ".lora_up.weight", Shape: shape(out, rank), Data: fill(out*rank, 0.5)},
	})

	e := testEngine(t, options{})
	plain := tinyRequest(t, "a glowing jellyfish", 99, "png")
	_, plainPNG, _ := generate(t, e, plain)
	withLoRA := tinyRequest(t, "a glowing jellyfish", 99, "png")
	withLoRA.Files = append(withLoRA.Files, plugins.ModelFile{Role: "lora", Path: loraPath})
	_, loraPNG, _ := generate(t, e, withLoRA)
	_, _, pp := decodePixels(t, plainPNG)
	_, _, lp := decodePixels(t, loraPNG)
	if diff := meanAbsDiff(pp, lp); diff < 0.5 {
		t.Errorf("the LoRA changed the image by %.2f on average; it was not applied", diff)
	}

	args := cliArgs(t, plain)
	for i, a := range args {
		if a == "-p" {
			args[i+1] += "<lora:glow:1>"
		}
	}
	want := runCLI(t, filepath.Join(dir, "cli-lora.png"), append(args, "--lora-model-dir", dir)...)
	_, _, wp := decodePixels(t, want)
	if !bytes.Equal(lp, wp) {
		t.Errorf("with the LoRA, pixels differ from sd-cli's: mean abs diff %.2f", meanAbsDiff(lp, wp))
	}
	// And the next job without it is the plain image again.
	_, again, _ := generate(t, e, plain)
	_, _, ap := decodePixels(t, again)
	if !bytes.Equal(ap, pp) {
		t.Errorf("after a LoRA job, a job without it differs from before by %.2f: the LoRA stuck to the resident model", meanAbsDiff(ap, pp))
	}
}

// TestPromptAndSeedMatter guards against a model that paints one image
// whatever it is asked.
func TestPromptAndSeedMatter(t *testing.T) {
	e := testEngine(t, options{})
	_, a, _ := generate(t, e, tinyRequest(t, "a red fox", 1, "png"))
	_, b, _ := generate(t, e, tinyRequest(t, "a red fox", 2, "png"))
	_, c, _ := generate(t, e, tinyRequest(t, "a blue whale", 1, "png"))
	_, _, pa := decodePixels(t, a)
	_, _, pb := decodePixels(t, b)
	_, _, pc := decodePixels(t, c)
	if meanAbsDiff(pa, pb) < 1 || meanAbsDiff(pa, pc) < 0.5 {
		t.Errorf("seed changes the image by %.2f, prompt by %.2f (mean abs diff per channel)", meanAbsDiff(pa, pb), meanAbsDiff(pa, pc))
	}
}

// TestResidency: five jobs on one model load it once; under a small
// budget a second model evicts the first.
func TestResidency(t *testing.T) {
	e := testEngine(t, options{})
	for i := range 5 {
		generate(t, e, tinyRequest(t, fmt.Sprintf("job %d", i), uint64(i), "webp"))
	}
	if n := e.models.Loads(); n != 1 {
		t.Fatalf("%d loads for five jobs on one model, want 1", n)
	}
	if tm := e.lastTimings(); tm.Loaded || tm.Sample <= 0 || tm.Encode <= 0 {
		t.Errorf("timings of a resident job = %+v", tm)
	}

	// A second model: the same weights under another id and path.
	second := filepath.Join(t.TempDir(), "tiny-sd-copy.gguf")
	if err := os.Link(tinyModel(t), second); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(second)
	e.models.SetBudget(uint64(st.Size()) + 1) // room for one
	req := tinyRequest(t, "second model", 7, "webp")
	req.Model, req.Files[0].Path = "tiny-sd-copy", second
	generate(t, e, req)
	res, _ := e.Resident(context.Background())
	if len(res) != 1 || res[0].Model != "tiny-sd-copy" || e.models.Loads() != 2 {
		t.Fatalf("after a second model under a one-model budget: resident %+v, %d loads; want only tiny-sd-copy, 2 loads", res, e.models.Loads())
	}
	if err := e.Unload(context.Background(), "tiny-sd-copy"); err != nil {
		t.Fatal(err)
	}
	if res, _ := e.Resident(context.Background()); len(res) != 0 {
		t.Fatalf("after Unload: resident %+v", res)
	}
}

// TestBadInputThenServed: each bad input fails with its reason and the
// next job is served.
func TestBadInputThenServed(t *testing.T) {
	dir := t.TempDir()
	e := testEngine(t, options{Limits: limits{MaxSide: 1024, MaxPixelSteps: 256 * 256 * 10}})
	garbage := filepath.Join(dir, "garbage.png")
	os.WriteFile(garbage, []byte("\x89PNG\r\n\x1a\nthis is not a png"), 0o644)
	notModel := filepath.Join(dir, "not-a-model.gguf")
	os.WriteFile(notModel, bytes.Repeat([]byte("GGUF"), 1000), 0o644)
	cases := []struct {
		name   string
		change func(*plugins.RunRequest)
		kind   plugins.ErrorKind
		want   string
	}{
		{"no model file", func(r *plugins.RunRequest) { r.Files = []plugins.ModelFile{{Role: "vae", Path: tinyModel(t)}} }, plugins.ErrBadInput, "no diffusion-model / model file"},
		{"unreadable init image", func(r *plugins.RunRequest) { r.Inputs.InitImage = garbage }, plugins.ErrBadInput, "init image: not a decodable image"},
		{"unreadable mask", func(r *plugins.RunRequest) {
			r.Inputs.InitImage = writePNG(t, dir, "ok.png", 8, 8, false, func(x, y int) color.NRGBA { return color.NRGBA{A: 255} })
			r.Inputs.Mask = garbage
		}, plugins.ErrBadInput, "mask: not a decodable image"},
		{"size the model cannot take", func(r *plugins.RunRequest) { r.Task.Image.Width = 60 }, plugins.ErrBadInput, "multiples of 8"},
		{"beyond the pixel-step bound", func(r *plugins.RunRequest) { r.Task.Image.Width, r.Task.Image.Height = 1024, 1024 }, plugins.ErrNodeLimit, "pixel-steps"},
		{"unknown sampler", func(r *plugins.RunRequest) { r.Task.Image.SamplingMethod = "warp" }, plugins.ErrBadInput, "unknown samplingMethod"},
		{"model file missing", func(r *plugins.RunRequest) { r.Files[0].Path = filepath.Join(dir, "gone.gguf") }, plugins.ErrEngine, "no such file"},
		{"not a model", func(r *plugins.RunRequest) { r.Model, r.Files[0].Path = "broken", notModel }, plugins.ErrEngine, "could not load the model"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := tinyRequest(t, "bad", 1, "webp")
			c.change(req)
			_, err := plugintest.Run(context.Background(), e, req)
			expectKind(t, err, c.kind, c.want)
			generate(t, e, tinyRequest(t, "served after "+c.name, 1, "webp"))
		})
	}
}

// TestCancelMidSampling cancels a long generation after its first step:
// Run returns cancelled before the last step, and the next job is served.
func TestCancelMidSampling(t *testing.T) {
	e := testEngine(t, options{})
	generate(t, e, tinyRequest(t, "warm", 1, "webp")) // resident: the first event is a step
	req := tinyRequest(t, "a very long job", 5, "webp")
	req.Task.Image.Steps = 400
	rec := &plugintest.Recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx, req, &stepNotifier{Recorder: rec, first: cancel}) }()
	err := <-done
	expectKind(t, err, plugins.ErrCancelled, "cancelled")
	if n := stepEvents(rec); n >= 400 {
		t.Errorf("%d steps reported: the engine ran to the end", n)
	}
	generate(t, e, tinyRequest(t, "served after a cancel", 1, "webp"))
}

// stepNotifier calls first once, at the first sampling step.
type stepNotifier struct {
	*plugintest.Recorder
	first func()
	once  sync.Once
}

func (s *stepNotifier) Progress(step, total uint64, unit string) error {
	if unit == unitStep && step >= 1 {
		s.once.Do(s.first)
	}
	return s.Recorder.Progress(step, total, unit)
}

// TestSampleMethodNamesMatchEngine: the plugin's sampler table is the
// library's enum.
func TestSampleMethodNamesMatchEngine(t *testing.T) {
	for i, name := range sampleMethods {
		if got := engineSampleMethodName(i); got != name {
			t.Errorf("sampler %d: engine calls it %q, the plugin %q", i, got, name)
		}
	}
}

// TestMissingVocabularyRefused: with a build that lacks LLM tokenizers, a
// model with an LLM text encoder is refused before the engine sees it.
func TestMissingVocabularyRefused(t *testing.T) {
	missing := missingVocabularies()
	t.Logf("this build lacks the vocabularies of: %v", missing)
	e := testEngine(t, options{})
	req := tinyRequest(t, "needs qwen", 1, "webp")
	req.Files = append(req.Files, plugins.ModelFile{Role: "text-encoder", Path: tinyModel(t)})
	_, err := plugintest.Run(context.Background(), e, req)
	if len(missing) > 0 {
		expectKind(t, err, plugins.ErrEngine, "without the tokenizer vocabularies")
	} else if je := plugins.AsJobError(err); je != nil && strings.Contains(je.Message, "tokenizer vocabularies") {
		t.Errorf("a complete build refused a model for its vocabulary: %v", err)
	}
	generate(t, e, tinyRequest(t, "served after", 1, "webp"))
}

// TestModelOptions: offloadToCpu, zeroCondT and flowShift reach the engine
// (a load with them succeeds and is another resident context), and the
// offloaded model paints the same pixels.
func TestModelOptions(t *testing.T) {
	e := testEngine(t, options{})
	_, plain, _ := generate(t, e, tinyRequest(t, "options", 3, "png"))
	req := tinyRequest(t, "options", 3, "png")
	req.Defaults.OffloadToCPU = true
	req.Defaults.ZeroCondT = true
	_, offloaded, _ := generate(t, e, req)
	if n := e.models.Loads(); n != 2 {
		t.Errorf("%d loads, want 2: the options shape another context", n)
	}
	_, _, pp := decodePixels(t, plain)
	_, _, op := decodePixels(t, offloaded)
	if !bytes.Equal(pp, op) {
		t.Errorf("weights kept in RAM changed the pixels by %.2f", meanAbsDiff(pp, op))
	}
	shift := float32(3)
	req.Defaults.FlowShift = &shift
	generate(t, e, req)
}
