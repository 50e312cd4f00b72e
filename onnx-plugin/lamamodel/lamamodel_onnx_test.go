//go:build onnx

package lamamodel

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/stokerhq/stoker/onnx-plugin/lamamodel/ortnode"
)

// TestTinyLaMaUnderONNXRuntime runs the model with ONNX Runtime's Node API
// on a random 64×64 image and a rectangular mask: the runtime accepts the
// file with the names and dynamic shapes LaMa's exports have, unmasked
// pixels come out bit for bit the input, and masked ones are the
// network's fill, in 0..1 and not the input.
func TestTinyLaMaUnderONNXRuntime(t *testing.T) {
	const h, w = 64, 48 // H ≠ W: the dynamic dimensions are independent
	model := filepath.Join(t.TempDir(), TinyLaMaFilename)
	if err := os.WriteFile(model, TinyLaMa(), 0o644); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	image := make([]float32, 3*h*w)
	for i := range image {
		image[i] = rng.Float32()
	}
	mask := make([]float32, h*w)
	masked := 0
	for y := 16; y < 40; y++ {
		for x := 10; x < 30; x++ {
			mask[y*w+x] = 1
			masked++
		}
	}
	res, err := ortnode.Run(context.Background(), model, h, w, image, mask, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := "inputs image,mask outputs output dims 1x3x64x48"; res.Info != want {
		t.Errorf("runtime saw %q, want %q", res.Info, want)
	}
	if len(res.Output) != len(image) {
		t.Fatalf("output has %d values, want %d", len(res.Output), len(image))
	}
	changed := 0
	for c := 0; c < 3; c++ {
		for p := 0; p < h*w; p++ {
			in, out := image[c*h*w+p], res.Output[c*h*w+p]
			if mask[p] == 0 {
				if out != in {
					t.Fatalf("unmasked pixel %d channel %d: %v, want the input %v", p, c, out, in)
				}
				continue
			}
			if out < 0 || out > 1 {
				t.Fatalf("masked pixel %d channel %d: %v outside 0..1", p, c, out)
			}
			if out != in {
				changed++
			}
		}
	}
	if changed < 3*masked*9/10 {
		t.Errorf("%d of %d masked values differ from the input, want nearly all", changed, 3*masked)
	}
}
