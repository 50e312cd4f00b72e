//go:build onnx

package agent_test

// ONNX Runtime end to end: tiny-lama object-removal jobs (an image and a
// mask) from the dev studio through the agent to the real onnx-plugin
// process and back; bad inputs each followed by a served job; the plugin
// killed mid-job. The onnx tag says ONNX Runtime is installed (by
// scripts/install-engines.sh); scripts/test.sh (CI) sets it.
//
//	scripts/install-engines.sh && source scripts/engines/env.sh
//	go test -tags onnx -run TinyLaMa ./supervisor/internal/agent/

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/stokerhq/stoker/supervisor/internal/devstudio"
	"github.com/stokerhq/stoker/supervisor/internal/engines"
)

// lamaInputs writes a w×h image (random pixels, or a smooth gradient that
// compresses well for the large ones) and a mask with a filled rectangle
// into the stack's files, and returns the image and the mask's rectangle.
func lamaInputs(tb testing.TB, s *engineStack, name string, w, h int, random bool) (*image.NRGBA, image.Rectangle) {
	tb.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	rng := rand.New(rand.NewPCG(uint64(w), uint64(h)))
	for y := range h {
		for x := range w {
			c := color.NRGBA{uint8(x * 255 / w), uint8(y * 255 / h), uint8((x + y) % 256), 255}
			if random {
				c = color.NRGBA{uint8(rng.UintN(256)), uint8(rng.UintN(256)), uint8(rng.UintN(256)), 255}
			}
			img.SetNRGBA(x, y, c)
		}
	}
	hole := image.Rect(w/4, h/3, w/2, h*2/3)
	mask := image.NewGray(img.Bounds())
	for y := hole.Min.Y; y < hole.Max.Y; y++ {
		for x := hole.Min.X; x < hole.Max.X; x++ {
			mask.SetGray(x, y, color.Gray{255})
		}
	}
	writePNG(tb, filepath.Join(s.files, name+".png"), img)
	writePNG(tb, filepath.Join(s.files, name+"-mask.png"), mask)
	return img, hole
}

func writePNG(tb testing.TB, path string, m image.Image) {
	tb.Helper()
	var buf bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&buf, m); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		tb.Fatal(err)
	}
}

// lamaTask is an object-removal task on the files lamaInputs wrote.
func lamaTask(s *engineStack, name, ext string) map[string]any {
	return map[string]any{
		"kind": "image", "prompt": "", "ext": ext,
		"initImageUrl": s.studio.DevFileURL(name + ".png"),
		"maskUrl":      s.studio.DevFileURL(name + "-mask.png"),
	}
}

// checkLaMaResult fails tb unless v stored a PNG of img's size that is
// img outside hole and differs from it inside.
func checkLaMaResult(tb testing.TB, s *engineStack, v devstudio.JobView, img *image.NRGBA, hole image.Rectangle) {
	tb.Helper()
	if v.Status != devstudio.JobCompleted {
		tb.Fatalf("job %s: %s: %s", v.ID, v.Status, v.Error)
	}
	if v.ResultExt != "png" {
		tb.Fatalf("result ext %q, want png", v.ResultExt)
	}
	got, err := png.Decode(bytes.NewReader(s.result(tb, v)))
	if err != nil {
		tb.Fatalf("result is not a PNG: %v", err)
	}
	if got.Bounds() != img.Bounds() {
		tb.Fatalf("result %v, want %v", got.Bounds(), img.Bounds())
	}
	changed := 0
	for y := range img.Bounds().Dy() {
		for x := range img.Bounds().Dx() {
			r, g, b, _ := got.At(x, y).RGBA()
			in := img.NRGBAAt(x, y)
			same := uint8(r>>8) == in.R && uint8(g>>8) == in.G && uint8(b>>8) == in.B
			if (image.Point{x, y}).In(hole) {
				if !same {
					changed++
				}
			} else if !same {
				tb.Fatalf("pixel (%d,%d) outside the mask changed: %d %d %d, was %v", x, y, r>>8, g>>8, b>>8, in)
			}
		}
	}
	if changed < hole.Dx()*hole.Dy()/2 {
		tb.Errorf("%d of %d masked pixels changed, want most", changed, hole.Dx()*hole.Dy())
	}
}

// TestTinyLaMaJobAndBadInputs: a tiny-lama job through the dev studio,
// the agent and the onnx plugin fills the masked region and keeps the rest
// bit for bit; each bad input fails for good with its reason and the next
// job is served.
func TestTinyLaMaJobAndBadInputs(t *testing.T) {
	s := startEngineStack(t, engineOptions{plugins: []string{"onnx-plugin"}, maxAttempts: 1})
	img, hole := lamaInputs(t, s, "photo", 96, 72, true)
	v := s.submit(t, "tiny-lama", lamaTask(s, "photo", "png"))
	checkLaMaResult(t, s, v, img, hole)

	writePNG(t, filepath.Join(s.files, "small-mask.png"), image.NewGray(image.Rect(0, 0, 40, 40)))
	// A PNG cut short: the agent's sniffing takes it for an image, the
	// plugin cannot decode it.
	whole, err := os.ReadFile(filepath.Join(s.files, "photo.png"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.files, "not-an-image.png"), whole[:200], 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		edit func(map[string]any)
		want string
	}{
		{"no mask", func(m map[string]any) { delete(m, "maskUrl") }, "mask"},
		{"no image", func(m map[string]any) { delete(m, "initImageUrl") }, "image"},
		{"mismatched sizes", func(m map[string]any) { m["maskUrl"] = s.studio.DevFileURL("small-mask.png") }, "same size"},
		{"unreadable image", func(m map[string]any) { m["initImageUrl"] = s.studio.DevFileURL("not-an-image.png") }, "unreadable"},
	} {
		task := lamaTask(s, "photo", "png")
		c.edit(task)
		bad := s.submit(t, "tiny-lama", task)
		if bad.Status != devstudio.JobFailed || bad.Retryable || !strings.Contains(bad.Error, c.want) {
			t.Errorf("%s: %s retryable=%v %q, want a final fail naming %q", c.name, bad.Status, bad.Retryable, bad.Error, c.want)
		}
		t.Logf("%s: %s", c.name, bad.Error)
		checkLaMaResult(t, s, s.submit(t, "tiny-lama", lamaTask(s, "photo", "png")), img, hole)
	}
}

// loadedSink signals when the onnx plugin logs that it loaded a model
// (the agent folds the plugin's log lines into its own). It is an hclog
// sink: Accept must not block.
type loadedSink chan struct{}

func (c loadedSink) Accept(_ string, _ hclog.Level, msg string, _ ...any) {
	if msg == "model loaded" {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// TestTinyLaMaPluginKilledMidJob: SIGKILL to the plugin while it works on
// a 3072×3072 image (after it loaded the model: the job is in the plugin)
// fails the job retryably (the studio, allowed one attempt, keeps the
// fail); the agent relaunches the plugin and serves the next job.
func TestTinyLaMaPluginKilledMidJob(t *testing.T) {
	t.Cleanup(func() { expectNoChildren(t) })
	s := startEngineStack(t, engineOptions{plugins: []string{"onnx-plugin"}, maxAttempts: 1})
	first := s.waitPlugin(t, "onnx-plugin", func(st engines.PluginStatus) bool { return st.State == engines.StateReady && st.Pid > 0 })
	loaded := make(loadedSink, 1)
	s.log.RegisterSink(loaded)
	t.Cleanup(func() { s.log.DeregisterSink(loaded) })
	lamaInputs(t, s, "large", 3072, 3072, false)
	raw, err := json.Marshal(lamaTask(s, "large", "png"))
	if err != nil {
		t.Fatal(err)
	}
	id, err := s.studio.Submit("tiny-lama", raw)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	select {
	case <-loaded:
	case <-ctx.Done():
		t.Fatal("the plugin never loaded the model")
	}
	_, killed := s.killMidJob(ctx, t, id, first.Pid)
	again := s.waitPlugin(t, "onnx-plugin", func(st engines.PluginStatus) bool {
		return st.State == engines.StateReady && st.Pid > 0 && st.Pid != first.Pid
	})
	t.Logf("relaunched as pid %d %v after the kill", again.Pid, time.Since(killed).Round(time.Millisecond))
	img, hole := lamaInputs(t, s, "after", 64, 64, true)
	checkLaMaResult(t, s, s.submit(t, "tiny-lama", lamaTask(s, "after", "png")), img, hole)
}
