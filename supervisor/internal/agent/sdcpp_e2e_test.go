//go:build sdcpp

package agent_test

// stable-diffusion.cpp end to end: tiny-sd image jobs from the dev studio
// through the agent to the real sdcpp-plugin process and back, and a job
// that brings the engine down with a ggml assertion. The sdcpp tag says the
// engine is installed: these tests need it, and scripts/test.sh (CI) sets
// the tag.
//
//	scripts/install-engines.sh && source scripts/engines/env.sh
//	go test -tags sdcpp -run TinySD ./supervisor/internal/agent/

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/image/webp"

	"github.com/stokerhq/stoker/supervisor/internal/devstudio"
	"github.com/stokerhq/stoker/supervisor/internal/engines"
	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

// tinySDTask is an image task at tiny-sd's recommended size and steps
// (64×64, 2 steps), given explicitly so the test does not lean on defaults.
func tinySDTask(tb testing.TB, prompt string, seed uint64) []byte {
	tb.Helper()
	raw, err := json.Marshal(map[string]any{"kind": "image", "prompt": prompt, "width": 64, "height": 64, "steps": 2, "seed": seed})
	if err != nil {
		tb.Fatal(err)
	}
	return raw
}

// checkTinySDImage fails tb unless the job stored a 64×64 WebP that is
// not one flat colour.
func checkTinySDImage(tb testing.TB, s *engineStack, v devstudio.JobView) {
	tb.Helper()
	if v.ResultExt != "webp" {
		tb.Fatalf("result ext %q, want webp", v.ResultExt)
	}
	b := s.result(tb, v)
	img, err := webp.Decode(bytes.NewReader(b))
	if err != nil {
		tb.Fatalf("stored result (%d bytes) is not a WebP: %v", len(b), err)
	}
	if r := img.Bounds(); r.Dx() != 64 || r.Dy() != 64 {
		tb.Fatalf("image %dx%d, want 64x64", r.Dx(), r.Dy())
	}
	var sum, sum2 float64
	colours := map[[3]uint32]bool{}
	for y := range 64 {
		for x := range 64 {
			r, g, b, _ := img.At(x, y).RGBA()
			colours[[3]uint32{r >> 8, g >> 8, b >> 8}] = true
			for _, c := range []uint32{r >> 8, g >> 8, b >> 8} {
				sum += float64(c)
				sum2 += float64(c) * float64(c)
			}
		}
	}
	n := float64(64 * 64 * 3)
	std := math.Sqrt(max(0, sum2/n-(sum/n)*(sum/n)))
	// tiny-sd's 64×64 noise has about 4000 colours and a deviation of
	// about 33; a flat or nearly flat image has a handful and near 0.
	if std < 10 || len(colours) < 256 {
		tb.Errorf("image has %d colours, standard deviation %.1f: want one that is not flat (>= 256, >= 10)", len(colours), std)
	}
}

func TestTinySDImageJob(t *testing.T) {
	s := startEngineStack(t, engineOptions{plugins: []string{"sdcpp-plugin"}})
	v, d := s.timedJob(t, "tiny-sd", tinySDTask(t, "a red fox in the snow", 42))
	t.Logf("first job (model download and load included): %v", d)
	checkTinySDImage(t, s, v)
}

// ggmlAssertion is the line stable-diffusion.cpp's ggml prints before it
// aborts on the conv LoRA of badConvLoRA.
const ggmlAssertion = "GGML_ASSERT(a->ne[2] == b->ne[2]) failed"

// writeBadConvLoRA writes a LoRA whose conv pair for tiny-sd's first UNet
// convolution has inconsistent shapes (down [3,7,3,3], up [320,5,1,1]):
// stable-diffusion.cpp applies it to the 320-channel input conv and ggml
// aborts on ggmlAssertion. It returns the file's sha256 and size.
func writeBadConvLoRA(tb testing.TB, path string) (string, uint64) {
	tb.Helper()
	tensors := []struct {
		name  string
		shape []int
	}{
		{"lora.diffusion_model.input_blocks.0.0.lora_down.weight", []int{3, 7, 3, 3}},
		{"lora.diffusion_model.input_blocks.0.0.lora_up.weight", []int{320, 5, 1, 1}},
	}
	header := map[string]any{"__metadata__": map[string]string{"format": "pt"}}
	off := 0
	for _, ts := range tensors {
		n := 4 // bytes per F32
		for _, d := range ts.shape {
			n *= d
		}
		header[ts.name] = map[string]any{"dtype": "F32", "shape": ts.shape, "data_offsets": []int{off, off + n}}
		off += n
	}
	h, err := json.Marshal(header)
	if err != nil {
		tb.Fatal(err)
	}
	for len(h)%8 != 0 {
		h = append(h, ' ')
	}
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(h)))
	b = append(b, h...)
	b = append(b, make([]byte, off)...) // zeros
	if err := os.WriteFile(path, b, 0o644); err != nil {
		tb.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), uint64(len(b))
}

// TestTinySDGGMLAbortFailsRetryableAndNodeServes: a LoRA that makes ggml
// assert aborts the plugin process mid-job. The studio must get one
// retryable fail that names the assertion, and the node must serve the
// next tiny-sd job on a relaunched plugin.
func TestTinySDGGMLAbortFailsRetryableAndNodeServes(t *testing.T) {
	t.Cleanup(func() { expectNoChildren(t) }) // runs after the stack stopped
	// One attempt: the first retryable failure is the job's last, so the
	// studio keeps it for the test (a second crash would be poison).
	s := startEngineStack(t, engineOptions{plugins: []string{"sdcpp-plugin"}, maxAttempts: 1})

	const lora = "bad-conv-lora.safetensors"
	sum, size := writeBadConvLoRA(t, filepath.Join(s.files, lora))
	base := s.models["tiny-sd"]
	modelSize, defaults := uint64(base.Size), base.CliDefaults
	err := s.catalog.Add("tiny-sd-bad-lora", devstudio.CatalogEntry{Source: protocol.ModelSource{
		Engine: protocol.EngineSdCpp,
		Files: []protocol.ModelFile{
			{Role: protocol.RoleModel, URL: s.studio.DevFileURL(base.Filename), Filename: base.Filename, ApproxBytes: &modelSize, Sha256: base.SHA256},
			{Role: protocol.RoleLoRA, URL: s.studio.DevFileURL(lora), Filename: lora, ApproxBytes: &size, Sha256: sum},
		},
		CliDefaults: &defaults,
	}, VramGbEstimate: 0.1})
	if err != nil {
		t.Fatal(err)
	}

	v := s.submit(t, "tiny-sd-bad-lora", json.RawMessage(tinySDTask(t, "a fox", 1)))
	t.Logf("fail message: %s", v.Error)
	if v.Status != devstudio.JobFailed || !v.Retryable || v.Attempts != 1 {
		t.Fatalf("studio has %s retryable=%v after %d attempts (%q), want a retryable failure after 1", v.Status, v.Retryable, v.Attempts, v.Error)
	}
	for _, w := range []string{"crashed: ", "sdcpp-plugin crashed mid-job", "SIGABRT", ggmlAssertion} {
		if !strings.Contains(v.Error, w) {
			t.Errorf("fail message %q lacks %q", v.Error, w)
		}
	}
	if !strings.HasPrefix(v.Error, "crashed: ") {
		t.Errorf("fail message %q, want it to start with %q", v.Error, "crashed: ")
	}

	v, _ = s.timedJob(t, "tiny-sd", tinySDTask(t, "a fox after the crash", 2))
	checkTinySDImage(t, s, v)
	var st engines.PluginStatus
	for _, p := range s.agent.Engines().Status() {
		if p.Name == "sdcpp-plugin" {
			st = p
		}
	}
	if st.Restarts != 1 || st.State != engines.StateReady {
		t.Errorf("sdcpp-plugin %s after %d restarts, want ready after 1", st.State, st.Restarts)
	}
}
