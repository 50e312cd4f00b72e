//go:build sdcpp

package sdmodel

// The real engine on the generated model: stable-diffusion.cpp's own sd-cli
// must load tiny-sd and make images that change with the seed and with the
// prompt, and are not one flat colour. Run after installing the engines:
//
//	scripts/install-engines.sh && . scripts/engines/env.sh
//	go test -tags sdcpp ./sdcpp-plugin/sdmodel/

import (
	"bufio"
	"bytes"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// sdCLI returns the sd-cli of the installed stable-diffusion.cpp, failing
// the test when there is none: under the sdcpp tag the engine is required.
func sdCLI(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("pkg-config", "--variable=cli", "stable-diffusion").Output()
	cli := strings.TrimSpace(string(out))
	if err != nil || cli == "" {
		t.Fatalf("pkg-config --variable=cli stable-diffusion: %q, %v; install the engines and source scripts/engines/env.sh", cli, err)
	}
	if _, err := os.Stat(cli); err != nil {
		t.Fatalf("sd-cli: %v", err)
	}
	return cli
}

func writeModel(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), TinySDFilename)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	if err := WriteTinySD(bw); err != nil {
		t.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// pixels is an image's RGB samples, 0..255, row by row.
type pixels []float64

// render runs sd-cli on model with the recommended defaults and returns
// the image.
func render(t *testing.T, cli, model, prompt string, seed int) pixels {
	t.Helper()
	d := TinySDDefaults()
	out := filepath.Join(t.TempDir(), "out.png")
	cmd := exec.CommandContext(t.Context(), cli,
		"-m", model, "-p", prompt, "-s", strconv.Itoa(seed),
		"-W", strconv.Itoa(d.Width), "-H", strconv.Itoa(d.Height),
		"--steps", strconv.Itoa(d.Steps),
		"--cfg-scale", strconv.FormatFloat(float64(d.CfgScale), 'g', -1, 32),
		"--sampling-method", d.SamplingMethod,
		"-o", out)
	log, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sd-cli %q seed %d: %v\n%s", prompt, seed, err, tail(log, 40))
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("sd-cli %q seed %d wrote no image: %v\n%s", prompt, seed, err, tail(log, 40))
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	r := img.Bounds()
	if r.Dx() != d.Width || r.Dy() != d.Height {
		t.Fatalf("image %dx%d, want %dx%d", r.Dx(), r.Dy(), d.Width, d.Height)
	}
	var px pixels
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			cr, cg, cb, _ := img.At(x, y).RGBA()
			px = append(px, float64(cr>>8), float64(cg>>8), float64(cb>>8))
		}
	}
	return px
}

func tail(b []byte, lines int) string {
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(ls[max(0, len(ls)-lines):], "\n")
}

// meanAbsDiff is the mean absolute difference of two images' samples.
func meanAbsDiff(a, b pixels) float64 {
	var d float64
	for i := range a {
		d += math.Abs(a[i] - b[i])
	}
	return d / float64(len(a))
}

// stats returns the standard deviation of the samples and the number of
// distinct colours.
func (p pixels) stats() (std float64, colours int) {
	var s, s2 float64
	seen := map[[3]float64]bool{}
	for i := 0; i+2 < len(p); i += 3 {
		seen[[3]float64{p[i], p[i+1], p[i+2]}] = true
	}
	for _, v := range p {
		s += v
		s2 += v * v
	}
	n := float64(len(p))
	return math.Sqrt(s2/n - (s/n)*(s/n)), len(seen)
}

func TestSDCLIImagesVary(t *testing.T) {
	cli := sdCLI(t)
	model := writeModel(t)
	const fox, whale = "a red fox in the snow", "a blue whale in the ocean"

	base := render(t, cli, model, fox, 42)
	for _, tt := range []struct {
		name   string
		prompt string
		seed   int
		// minDiff and maxDiff bound the mean absolute difference from base
		// (0..255). Two unrelated images of this model differ by about 40.
		minDiff, maxDiff float64
	}{
		{"same prompt and seed", fox, 42, 0, 0},
		{"other seed", fox, 7, 10, 255},
		{"other prompt", whale, 42, 10, 255},
	} {
		t.Run(tt.name, func(t *testing.T) {
			img := render(t, cli, model, tt.prompt, tt.seed)
			d := meanAbsDiff(base, img)
			t.Logf("mean absolute difference from %q seed 42: %.1f", fox, d)
			if d < tt.minDiff || d > tt.maxDiff {
				t.Errorf("mean absolute difference %.1f, want %g..%g", d, tt.minDiff, tt.maxDiff)
			}
			std, colours := img.stats()
			t.Logf("standard deviation %.1f, %d colours", std, colours)
			if std < 10 || colours < 256 {
				t.Errorf("standard deviation %.1f over %d colours, want an image that is not flat (>= 10, >= 256)", std, colours)
			}
		})
	}
}
