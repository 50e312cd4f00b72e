//go:build sdcpp

package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/plugins/plugintest"
)

func checkImage(t *testing.T, r *plugintest.Recorder, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	ext, data := r.OutputBytes()
	if ext != "webp" || len(data) < 12 || string(data[:4]) != "RIFF" || string(data[8:12]) != "WEBP" {
		t.Errorf("output %q of %d bytes is not a WebP", ext, len(data))
	}
	// Over gRPC the SDK's progress is latest wins, sent at most every
	// 100 ms: a sampling that ends within that time shows as its first
	// step event only (0 of N), superseded by the decode. That the phase
	// was reported is what reaches the host on a fast job; every step
	// reaching the observer is TestParityWithSDCLI's check.
	if !sawUnit(r, unitStep) {
		t.Errorf("no sampling progress: %v", r.Events())
	}
}

// TestOverGRPC drives the real engine through the SDK's in-process gRPC
// connection: conformance, residency through ModelManager, cancellation.
func TestOverGRPC(t *testing.T) {
	e := testEngine(t, options{})
	host := plugintest.Connect(t, e)
	plugintest.Conformance(t, host,
		plugintest.Case{Name: "image", Req: *tinyRequest(t, "a harbour", 3, "webp"), Check: checkImage},
		plugintest.Case{Name: "image again", Req: *tinyRequest(t, "a harbour at night", 4, "webp"), Check: checkImage},
	)
	if n := e.models.Loads(); n != 1 {
		t.Errorf("%d loads for two jobs on one model, want 1", n)
	}
	mm, ok := host.(plugins.ModelManager)
	if !ok {
		t.Fatalf("host engine %T is not a ModelManager", host)
	}
	res, err := mm.Resident(context.Background())
	if err != nil || len(res) != 1 || res[0].Model != "tiny-sd" || res[0].Bytes == 0 {
		t.Fatalf("Resident = %+v, %v; want tiny-sd", res, err)
	}
	long := tinyRequest(t, "a long one", 9, "webp")
	long.Task.Image.Steps = 400
	err = plugintest.ExpectCancel(t, host, long)
	if je := plugins.AsJobError(err); je == nil || je.Kind != plugins.ErrCancelled {
		t.Errorf("cancelled run: %v, want %s", err, plugins.ErrCancelled)
	}
}

var pluginBinary struct {
	once sync.Once
	path string
	err  error
}

// builtPlugin builds sdcpp-plugin with the engine, once per run.
func builtPlugin(t testing.TB) string {
	t.Helper()
	pluginBinary.once.Do(func() {
		pluginBinary.path = filepath.Join(testDir, "sdcpp-plugin")
		out, err := exec.Command("go", "build", "-tags", "sdcpp", "-o", pluginBinary.path, ".").CombinedOutput()
		if err != nil {
			pluginBinary.err = &buildError{err, string(out)}
		}
	})
	if pluginBinary.err != nil {
		t.Fatal(pluginBinary.err)
	}
	return pluginBinary.path
}

type buildError struct {
	err error
	out string
}

func (b *buildError) Error() string { return "go build: " + b.err.Error() + "\n" + b.out }

// TestGGMLAbortIsACrashReport: a hostile job that reaches a ggml assertion
// (a LoRA whose convolution shapes do not fit) kills the plugin process;
// the host gets a retryable crash report carrying the assertion line, and
// a new process serves the next job.
func TestGGMLAbortIsACrashReport(t *testing.T) {
	dir := t.TempDir()
	bad := writeSafetensors(t, dir, "hostile.safetensors", []stTensor{
		{Name: "lora.diffusion_model.input_blocks.0.0.lora_down.weight", Shape: []int{3, 7, 3, 3}},
		{Name: "lora.diffusion_model.input_blocks.0.0.lora_up.weight", Shape: []int{320, 5, 1, 1}},
	})
	req := tinyRequest(t, "a hostile lora", 1, "webp")
	req.Files = append(req.Files, plugins.ModelFile{Role: "lora", Path: bad})
	path := builtPlugin(t)
	je := plugintest.ExpectCrash(t, path, req)
	if je.Signal != "SIGABRT" {
		t.Errorf("signal = %q, want SIGABRT", je.Signal)
	}
	tail := strings.Join(je.StderrTail, "\n")
	if !strings.Contains(tail, "GGML_ASSERT(") {
		t.Errorf("crash report does not carry the assertion line; stderr tail:\n%s", tail)
	}

	p := plugintest.Launch(t, path)
	rec, err := plugintest.Run(context.Background(), p, tinyRequest(t, "served after the crash", 1, "webp"))
	checkImage(t, rec, err)
}

// TestStubNotReady: the binary built without the engine says why it is not
// ready (built here, since the package's own tests are tagged).
func TestStubNotReady(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sdcpp-plugin-stub")
	if out, err := exec.Command("go", "build", "-o", path, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	p := plugintest.Launch(t, path)
	d, err := p.Describe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if d.Ready || !strings.Contains(d.NotReadyReason, "-tags sdcpp") {
		t.Errorf("stub describes itself as ready=%t %q", d.Ready, d.NotReadyReason)
	}
}

// sawUnit reports whether any progress event of unit reached the recorder.
func sawUnit(rec *plugintest.Recorder, unit string) bool {
	for _, p := range rec.Events() {
		if p.Unit == unit {
			return true
		}
	}
	return false
}
