//go:build onnx

package main

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/stokerhq/stoker/onnx-plugin/lamamodel"
	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/plugins/plugintest"
	"golang.org/x/image/webp"
)

// The tests run the real ONNX Runtime (the library scripts/engines/onnx.sh
// installs, found as the plugin finds it) on tiny-lama, lamamodel's model
// with LaMa's signature, whose output equals the input wherever the mask
// is 0.

var testDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "onnx-plugin-test")
	if err != nil {
		panic(err)
	}
	testDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var tinyModel struct {
	once sync.Once
	path string
	err  error
}

// tinyLaMa writes tiny-lama once per run and returns its path.
func tinyLaMa(t testing.TB) string {
	t.Helper()
	tinyModel.once.Do(func() {
		tinyModel.path = filepath.Join(testDir, lamamodel.TinyLaMaFilename)
		var buf bytes.Buffer
		if tinyModel.err = lamamodel.WriteTinyLaMa(&buf); tinyModel.err == nil {
			tinyModel.err = os.WriteFile(tinyModel.path, buf.Bytes(), 0o644)
		}
	})
	if tinyModel.err != nil {
		t.Fatal(tinyModel.err)
	}
	return tinyModel.path
}

// testImage is a w×h gradient with some structure, its pixels a function
// of the position.
func testImage(w, h int) *image.NRGBA {
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			m.SetNRGBA(x, y, color.NRGBA{uint8(x * 255 / max(w-1, 1)), uint8(y * 255 / max(h-1, 1)), uint8((x ^ y) * 7), 255})
		}
	}
	return m
}

// testMask is white (fill) in the rectangle r, black elsewhere.
func testMask(w, h int, r image.Rectangle) *image.Gray {
	m := image.NewGray(image.Rect(0, 0, w, h))
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			m.SetGray(x, y, color.Gray{255})
		}
	}
	return m
}

func writePNG(t testing.TB, name string, m image.Image) string {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, m); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

var fillRect = image.Rect(5, 4, 17, 13)

// lamaRequest is a job on tiny-lama with a w×h image and a mask over
// fillRect.
func lamaRequest(t testing.TB, w, h int, ext string) *plugins.RunRequest {
	t.Helper()
	return &plugins.RunRequest{
		JobID:  "job-" + ext,
		Model:  "tiny-lama",
		Engine: engineID,
		Task:   plugins.Task{Kind: plugins.KindImage, Image: &plugins.ImageTask{Ext: ext}},
		Files:  []plugins.ModelFile{{Role: "model", Path: tinyLaMa(t)}},
		Inputs: plugins.Inputs{
			InitImage: writePNG(t, "image.png", testImage(w, h)),
			Mask:      writePNG(t, "mask.png", testMask(w, h, fillRect)),
		},
	}
}

func testEngine(t testing.TB, o options) *engine {
	t.Helper()
	e := newEngine(nil, o)
	t.Cleanup(e.Close)
	if ok, reason := engineStatus(e.opt.Library, e.opt.Provider); !ok {
		t.Fatalf("ONNX Runtime not ready: %s", reason)
	}
	return e
}

// decodeOutput decodes a job's output (PNG or WebP).
func decodeOutput(t testing.TB, ext string, data []byte) image.Image {
	t.Helper()
	var m image.Image
	var err error
	switch ext {
	case "png":
		m, err = png.Decode(bytes.NewReader(data))
	case "webp":
		m, err = webp.Decode(bytes.NewReader(data))
	default:
		t.Fatalf("output extension %q", ext)
	}
	if err != nil {
		t.Fatalf("decode %s output: %v", ext, err)
	}
	return m
}

// checkFilled checks a job's output: an image of the input's size whose
// pixels outside the mask are the input's exactly and whose masked pixels
// are not all the input's.
func checkFilled(t *testing.T, w, h int, wantExt string) func(*testing.T, *plugintest.Recorder, error) {
	return func(t *testing.T, r *plugintest.Recorder, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		ext, data := r.OutputBytes()
		if ext != wantExt {
			t.Fatalf("output extension %q, want %q", ext, wantExt)
		}
		got := decodeOutput(t, ext, data)
		if b := got.Bounds(); b.Dx() != w || b.Dy() != h {
			t.Fatalf("output is %dx%d, want %dx%d", b.Dx(), b.Dy(), w, h)
		}
		in := testImage(w, h)
		changed := 0
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				g := color.NRGBAModel.Convert(got.At(x, y)).(color.NRGBA)
				want := in.NRGBAAt(x, y)
				if image.Pt(x, y).In(fillRect) {
					if g != want {
						changed++
					}
				} else if g != want {
					t.Fatalf("unmasked pixel (%d,%d) = %v, want the input's %v", x, y, g, want)
				}
			}
		}
		if changed == 0 {
			t.Errorf("no masked pixel was filled")
		}
		if ps := r.Events(); len(ps) == 0 || ps[len(ps)-1].Step != stages {
			t.Errorf("progress %v, want it to end at %d of %d", ps, stages, stages)
		}
	}
}

// TestFill: a job with an image (not a multiple of 8: padded and cropped
// back) and a mask answers a PNG or a WebP of the input's size whose
// unmasked pixels are the input's; two jobs on one model load it once.
func TestFill(t *testing.T) {
	e := testEngine(t, options{})
	for _, ext := range []string{"png", "webp"} {
		rec, err := plugintest.Run(context.Background(), e, lamaRequest(t, 37, 21, ext))
		checkFilled(t, 37, 21, ext)(t, rec, err)
	}
	if n := e.models.Loads(); n != 1 {
		t.Errorf("%d loads for two jobs on one model, want 1", n)
	}
	res, _ := e.Resident(context.Background())
	if len(res) != 1 || res[0].Model != "tiny-lama" {
		t.Errorf("Resident = %+v, want tiny-lama", res)
	}
	if err := e.Unload(context.Background(), "tiny-lama"); err != nil {
		t.Fatal(err)
	}
	if res, _ := e.Resident(context.Background()); len(res) != 0 {
		t.Errorf("Resident after Unload = %+v", res)
	}
}

// TestBadInputThenServed: each bad input is bad_input with a reason, and
// the same engine serves the next job.
func TestBadInputThenServed(t *testing.T) {
	e := testEngine(t, options{})
	dir := t.TempDir()
	notImage := filepath.Join(dir, "not-an-image.png")
	os.WriteFile(notImage, []byte("this is not a picture"), 0o644)
	wrongModel := filepath.Join(dir, "not-lama.onnx")
	os.WriteFile(wrongModel, lamamodel.TinyLaMa()[:40], 0o644)
	cases := []struct {
		name, want string
		edit       func(*plugins.RunRequest)
	}{
		{"no image", "initImageUrl", func(r *plugins.RunRequest) { r.Inputs.InitImage = "" }},
		{"no mask", "maskUrl", func(r *plugins.RunRequest) { r.Inputs.Mask = "" }},
		{"image gone", "no such file", func(r *plugins.RunRequest) { r.Inputs.InitImage = filepath.Join(dir, "gone.png") }},
		{"unreadable image", "unreadable image", func(r *plugins.RunRequest) { r.Inputs.InitImage = notImage }},
		{"unreadable mask", "unreadable image", func(r *plugins.RunRequest) { r.Inputs.Mask = notImage }},
		{"sizes differ", "same size", func(r *plugins.RunRequest) {
			r.Inputs.Mask = writePNG(t, "small-mask.png", testMask(20, 21, fillRect))
		}},
		{"not a model", "model", func(r *plugins.RunRequest) { r.Files[0].Path = wrongModel }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := lamaRequest(t, 37, 21, "png")
			c.edit(req)
			_, err := plugintest.Run(context.Background(), e, req)
			je := plugins.AsJobError(err)
			if je == nil || je.Kind != plugins.ErrBadInput || !strings.Contains(je.Message, c.want) {
				t.Fatalf("Run = %v, want %s naming %q", err, plugins.ErrBadInput, c.want)
			}
			rec, err := plugintest.Run(context.Background(), e, lamaRequest(t, 37, 21, "png"))
			checkFilled(t, 37, 21, "png")(t, rec, err)
		})
	}
}

// cancelAt is a Recorder that cancels its job when the job reports
// progress step at.
type cancelAt struct {
	plugintest.Recorder
	at     uint64
	once   sync.Once
	cancel context.CancelFunc
}

func (c *cancelAt) Progress(step, total uint64, unit string) error {
	if step == c.at {
		c.once.Do(c.cancel)
	}
	return c.Recorder.Progress(step, total, unit)
}

// TestCancel: a cancellation as the run starts, on a large image, sets ONNX
// Runtime's terminate flag: the run stops with its terminate error, the
// job ends cancelled, and the engine serves the next one.
func TestCancel(t *testing.T) {
	e := testEngine(t, options{})
	req := lamaRequest(t, 2048, 2048, "png")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ev := &cancelAt{at: 2, cancel: cancel}
	err := e.Run(ctx, req, ev)
	je := plugins.AsJobError(err)
	if je == nil || je.Kind != plugins.ErrCancelled || !strings.Contains(je.Message, "terminate") {
		t.Fatalf("cancelled run: %v, want %s with ONNX Runtime's terminate error", err, plugins.ErrCancelled)
	}
	t.Logf("cancelled: %v", err)
	if _, data := ev.OutputBytes(); len(data) != 0 {
		t.Errorf("cancelled run wrote %d bytes of output", len(data))
	}
	err = plugintest.ExpectCancel(t, e, req)
	if je := plugins.AsJobError(err); je == nil || je.Kind != plugins.ErrCancelled {
		t.Fatalf("cancelled run: %v, want %s", err, plugins.ErrCancelled)
	}
	rec, err := plugintest.Run(context.Background(), e, lamaRequest(t, 37, 21, "png"))
	checkFilled(t, 37, 21, "png")(t, rec, err)
}

// TestOverGRPC: conformance through the SDK's gRPC connection, and the
// jobs through it.
func TestOverGRPC(t *testing.T) {
	e := testEngine(t, options{})
	host := plugintest.Connect(t, e)
	plugintest.Conformance(t, host,
		plugintest.Case{Name: "fill png", Req: *lamaRequest(t, 37, 21, "png"), Check: checkFilled(t, 37, 21, "png")},
		plugintest.Case{Name: "fill webp", Req: *lamaRequest(t, 37, 21, "webp"), Check: checkFilled(t, 37, 21, "webp")},
	)
	if n := e.models.Loads(); n != 1 {
		t.Errorf("%d loads, want 1", n)
	}
}

var pluginBinary struct {
	once sync.Once
	path string
	err  error
	out  []byte
}

// builtPlugin builds onnx-plugin with the engine, once per run.
func builtPlugin(t testing.TB) string {
	t.Helper()
	pluginBinary.once.Do(func() {
		pluginBinary.path = filepath.Join(testDir, "onnx-plugin")
		pluginBinary.out, pluginBinary.err = exec.Command("go", "build", "-tags", "onnx", "-o", pluginBinary.path, ".").CombinedOutput()
	})
	if pluginBinary.err != nil {
		t.Fatalf("go build: %v\n%s", pluginBinary.err, pluginBinary.out)
	}
	return pluginBinary.path
}

// firstProgress is a Recorder that closes started at the first progress
// event.
type firstProgress struct {
	plugintest.Recorder
	once    sync.Once
	started chan struct{}
}

func (f *firstProgress) Progress(step, total uint64, unit string) error {
	f.once.Do(func() { close(f.started) })
	return f.Recorder.Progress(step, total, unit)
}

// TestKilledMidJob: the plugin process killed during a job gives the host
// a retryable crash report; a new process serves the next job.
func TestKilledMidJob(t *testing.T) {
	path := builtPlugin(t)
	p := plugintest.Launch(t, path)
	ev := &firstProgress{started: make(chan struct{})}
	errc := make(chan error, 1)
	go func() { errc <- p.Run(context.Background(), lamaRequest(t, 2048, 2048, "png"), ev) }()
	select {
	case <-ev.started:
	case err := <-errc:
		t.Fatalf("job ended before its first progress event: %v", err)
	}
	if err := syscall.Kill(p.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := <-errc
	je := plugins.AsJobError(err)
	if je == nil || je.Kind != plugins.ErrCrashed || !je.Retryable() || je.Signal != "SIGKILL" {
		t.Fatalf("killed plugin: %v (%+v), want a retryable %s with SIGKILL", err, je, plugins.ErrCrashed)
	}

	q := plugintest.Launch(t, path)
	rec, err := plugintest.Run(context.Background(), q, lamaRequest(t, 37, 21, "png"))
	checkFilled(t, 37, 21, "png")(t, rec, err)
}

// TestStubNotReady: the binary built without the engine says why.
func TestStubNotReady(t *testing.T) {
	path := filepath.Join(t.TempDir(), "onnx-plugin-stub")
	if out, err := exec.Command("go", "build", "-o", path, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	p := plugintest.Launch(t, path)
	d, err := p.Describe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if d.Ready || !strings.Contains(d.NotReadyReason, "-tags onnx") {
		t.Errorf("stub describes itself as ready=%t %q", d.Ready, d.NotReadyReason)
	}
}

// TestMissingLibraryNotReady: a plugin whose ONNX Runtime library cannot be
// opened says which and why.
func TestMissingLibraryNotReady(t *testing.T) {
	p := plugintest.Launch(t, builtPlugin(t), envLibrary+"=/nonexistent/libonnxruntime.so")
	d, err := p.Describe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if d.Ready || !strings.Contains(d.NotReadyReason, "/nonexistent/libonnxruntime.so") {
		t.Errorf("describes itself as ready=%t %q", d.Ready, d.NotReadyReason)
	}
}

// TestCUDAWithoutProviderNotReady: STOKER_ONNX_PROVIDER=cuda on a library
// without the CUDA execution provider (the npm registry's) leaves the
// plugin not ready, saying so.
func TestCUDAWithoutProviderNotReady(t *testing.T) {
	p := plugintest.Launch(t, builtPlugin(t), envProvider+"=cuda")
	d, err := p.Describe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if d.Ready || !strings.Contains(d.NotReadyReason, "CUDA execution provider") {
		t.Errorf("describes itself as ready=%t %q", d.Ready, d.NotReadyReason)
	}
	t.Logf("not ready: %s", d.NotReadyReason)
}
