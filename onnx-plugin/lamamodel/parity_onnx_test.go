//go:build onnx

package lamamodel

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/stokerhq/stoker/onnx-plugin/lamamodel/ortnode"
	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/plugins/plugintest"
)

// parityCase is an image and a mask at a size that is not a multiple of
// LaMa's 8 (so the plugin pads and crops), their PNG files, and the padded
// tensors LaMa's preprocessing makes of them, computed here independently
// of the plugin: value/255 in float32, the mask binarised at half, numpy's
// "symmetric" padding on the bottom and right.
type parityCase struct {
	w, h, pw, ph int
	img          *image.NRGBA
	mask         []bool
	imagePath    string
	maskPath     string
	imageT       []float32
	maskT        []float32
}

func newParityCase(t *testing.T, w, h int) *parityCase {
	t.Helper()
	c := &parityCase{w: w, h: h, pw: (w + 7) / 8 * 8, ph: (h + 7) / 8 * 8}
	rng := rand.New(rand.NewPCG(14, 3))
	c.img = image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := range c.img.Pix {
		c.img.Pix[i] = uint8(rng.UintN(256))
		if i%4 == 3 {
			c.img.Pix[i] = 255
		}
	}
	gray := image.NewGray(image.Rect(0, 0, w, h))
	c.mask = make([]bool, w*h)
	for y := range h {
		for x := range w {
			// A rectangle and a disc, both reaching the padded edges.
			dx, dy := float64(x-w+4), float64(y-h+4)
			if (x >= w/4 && x < w/2 && y >= h/5 && y < h*3/5) || dx*dx+dy*dy < 64 {
				c.mask[y*w+x] = true
				gray.Pix[y*gray.Stride+x] = 255
			}
		}
	}
	dir := t.TempDir()
	c.imagePath, c.maskPath = filepath.Join(dir, "image.png"), filepath.Join(dir, "mask.png")
	for path, m := range map[string]image.Image{c.imagePath: c.img, c.maskPath: gray} {
		var buf bytes.Buffer
		if err := png.Encode(&buf, m); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sym := func(i, n int) int { // numpy.pad mode="symmetric"
		i %= 2 * n
		if i >= n {
			i = 2*n - 1 - i
		}
		return i
	}
	plane := c.pw * c.ph
	c.imageT = make([]float32, 3*plane)
	c.maskT = make([]float32, plane)
	for y := range c.ph {
		for x := range c.pw {
			sx, sy := sym(x, w), sym(y, h)
			p := c.img.Pix[sy*c.img.Stride+4*sx:]
			for ch := range 3 {
				c.imageT[ch*plane+y*c.pw+x] = float32(p[ch]) / 255
			}
			if c.mask[sy*w+sx] {
				c.maskT[y*c.pw+x] = 1
			}
		}
	}
	return c
}

// libraryPath is the ONNX Runtime library the plugin opens (its rule:
// STOKER_ONNX_LIBRARY, else the engines cache's registered prefix).
func libraryPath(t *testing.T) string {
	if p := os.Getenv("STOKER_ONNX_LIBRARY"); p != "" {
		return p
	}
	dir := os.Getenv("STOKER_ENGINES_DIR")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".cache", "stoker", "engines")
	}
	b, err := os.ReadFile(filepath.Join(dir, "current", "onnxruntime"))
	if err != nil {
		t.Fatalf("no ONNX Runtime registered (run scripts/install-engines.sh): %v", err)
	}
	prefix := strings.TrimSpace(string(b))
	if prefix == "system" {
		return "libonnxruntime.so"
	}
	pc, err := os.ReadFile(filepath.Join(prefix, "lib", "pkgconfig", "onnxruntime.pc"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(pc), "\n") {
		if v, ok := strings.CutPrefix(line, "libfile="); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("%s/lib/pkgconfig/onnxruntime.pc has no libfile", prefix)
	return ""
}

// goRun runs the model in this process through the Go binding the plugin
// uses (github.com/yalue/onnxruntime_go) on the library the plugin opens.
func goRun(t *testing.T, model string, c *parityCase) []float32 {
	t.Helper()
	ort.SetSharedLibraryPath(libraryPath(t))
	if err := ort.InitializeEnvironment(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ort.DestroyEnvironment() })
	it, err := ort.NewTensor(ort.NewShape(1, 3, int64(c.ph), int64(c.pw)), c.imageT)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Destroy()
	mt, err := ort.NewTensor(ort.NewShape(1, 1, int64(c.ph), int64(c.pw)), c.maskT)
	if err != nil {
		t.Fatal(err)
	}
	defer mt.Destroy()
	ot, err := ort.NewEmptyTensor[float32](ort.NewShape(1, 3, int64(c.ph), int64(c.pw)))
	if err != nil {
		t.Fatal(err)
	}
	defer ot.Destroy()
	s, err := ort.NewAdvancedSession(model, []string{InputImage, InputMask}, []string{Output}, []ort.Value{it, mt}, []ort.Value{ot}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destroy()
	if err := s.Run(); err != nil {
		t.Fatal(err)
	}
	return append([]float32(nil), ot.GetData()...)
}

// to8 is LaMa's post-processing: clip to 0..1, ×255, rounded.
func to8(v float32) uint8 {
	if !(v > 0) {
		return 0
	}
	if v >= 1 {
		return 255
	}
	return uint8(math.Round(float64(v) * 255))
}

// TestParityWithONNXRuntimeNode: tiny-lama on the same 61×45 image and
// mask, padded to 64×48, through ONNX Runtime's own Node API
// (onnxruntime-node@1.30.0) and through the Go binding the plugin uses on
// the library scripts/engines/onnx.sh installed from that package, gives
// the bit-identical output tensor; and the onnx plugin, built and launched
// as the supervisor runs it, given the PNG files, returns a PNG whose
// pixels are exactly Node's tensor cropped, clipped, ×255 and rounded
// (and, outside the mask, the input's).
func TestParityWithONNXRuntimeNode(t *testing.T) {
	c := newParityCase(t, 61, 45)
	model := filepath.Join(t.TempDir(), TinyLaMaFilename)
	if err := os.WriteFile(model, TinyLaMa(), 0o644); err != nil {
		t.Fatal(err)
	}
	node, err := ortnode.Run(context.Background(), model, c.ph, c.pw, c.imageT, c.maskT, 0)
	if err != nil {
		t.Fatal(err)
	}
	goOut := goRun(t, model, c)
	if len(node.Output) != len(goOut) || len(goOut) != 3*c.pw*c.ph {
		t.Fatalf("Node gave %d values, Go %d, want %d", len(node.Output), len(goOut), 3*c.pw*c.ph)
	}
	for i := range goOut {
		if math.Float32bits(goOut[i]) != math.Float32bits(node.Output[i]) {
			t.Fatalf("value %d: Go binding %v, Node %v", i, goOut[i], node.Output[i])
		}
	}

	bin := filepath.Join(t.TempDir(), "onnx-plugin")
	if out, err := exec.Command("go", "build", "-tags", "onnx", "-o", bin, "github.com/stokerhq/stoker/onnx-plugin").CombinedOutput(); err != nil {
		t.Fatalf("go build -tags onnx ./onnx-plugin: %v\n%s", err, out)
	}
	p := plugintest.Launch(t, bin)
	rec, err := plugintest.Run(context.Background(), p, &plugins.RunRequest{
		JobID: "parity", Model: "tiny-lama", Engine: "onnx",
		Task:   plugins.Task{Kind: plugins.KindImage, Image: &plugins.ImageTask{Ext: "png"}},
		Files:  []plugins.ModelFile{{Role: "model", Path: model}},
		Inputs: plugins.Inputs{InitImage: c.imagePath, Mask: c.maskPath},
	})
	if err != nil {
		t.Fatalf("plugin run: %v (logs %q)", err, rec.Logs())
	}
	ext, data := rec.OutputBytes()
	if ext != "png" {
		t.Fatalf("plugin output ext %q, want png", ext)
	}
	got, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("plugin output (%d bytes) is not a PNG: %v", len(data), err)
	}
	if b := got.Bounds(); b.Dx() != c.w || b.Dy() != c.h {
		t.Fatalf("plugin image %dx%d, want %dx%d", b.Dx(), b.Dy(), c.w, c.h)
	}
	plane := c.pw * c.ph
	filled := 0
	for y := range c.h {
		for x := range c.w {
			r, g, b, a := got.At(x, y).RGBA()
			have := [4]uint8{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8), uint8(a >> 8)}
			i := y*c.pw + x
			want := [4]uint8{to8(node.Output[i]), to8(node.Output[plane+i]), to8(node.Output[2*plane+i]), 255}
			if have != want {
				t.Fatalf("pixel (%d,%d): plugin %v, from Node's tensor %v", x, y, have, want)
			}
			in := c.img.Pix[y*c.img.Stride+4*x:]
			if same := have[0] == in[0] && have[1] == in[1] && have[2] == in[2]; c.mask[y*c.w+x] {
				if !same {
					filled++
				}
			} else if !same {
				t.Fatalf("unmasked pixel (%d,%d): %v, want the input's %v", x, y, have, in[:3])
			}
		}
	}
	if filled == 0 {
		t.Error("no masked pixel changed")
	}
	t.Logf("%dx%d (run at %dx%d): %d values identical between Node and Go, %d pixels identical to Node's, %d filled", c.w, c.h, c.pw, c.ph, len(goOut), c.w*c.h, filled)
}
