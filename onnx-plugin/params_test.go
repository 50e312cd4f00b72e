package main

import (
	"image"
	"image/color"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stokerhq/stoker/plugins"
)

func TestResolve(t *testing.T) {
	base := func() *plugins.RunRequest {
		return &plugins.RunRequest{
			Engine: engineID,
			Task:   plugins.Task{Kind: plugins.KindImage, Image: &plugins.ImageTask{Ext: "PNG"}},
			Files:  []plugins.ModelFile{{Role: "model", Path: "/m.onnx"}},
			Inputs: plugins.Inputs{InitImage: "/i.png", Mask: "/k.png"},
		}
	}
	j, err := resolve(base())
	if err != nil || *j != (job{Model: "/m.onnx", Image: "/i.png", Mask: "/k.png", Ext: "png"}) {
		t.Fatalf("resolve = %+v, %v", j, err)
	}
	for _, ext := range []string{"", "webp", "jpg"} {
		r := base()
		r.Task.Image.Ext = ext
		if j, err := resolve(r); err != nil || j.Ext != "webp" {
			t.Errorf("ext %q: %+v, %v; want webp", ext, j, err)
		}
	}
	for _, c := range []struct {
		name string
		kind plugins.ErrorKind
		want string
		edit func(*plugins.RunRequest)
	}{
		{"no model", plugins.ErrBadInput, "role model", func(r *plugins.RunRequest) { r.Files = nil }},
		{"no image", plugins.ErrBadInput, "initImageUrl", func(r *plugins.RunRequest) { r.Inputs.InitImage = "" }},
		{"no mask", plugins.ErrBadInput, "maskUrl", func(r *plugins.RunRequest) { r.Inputs.Mask = "" }},
		{"other engine", plugins.ErrUnsupported, "sd-cpp", func(r *plugins.RunRequest) { r.Engine = "sd-cpp" }},
		{"other kind", plugins.ErrUnsupported, "llm", func(r *plugins.RunRequest) { r.Task = plugins.Task{Kind: plugins.KindLLM} }},
	} {
		r := base()
		c.edit(r)
		_, err := resolve(r)
		if je := plugins.AsJobError(err); je == nil || je.Kind != c.kind || !strings.Contains(je.Message, c.want) {
			t.Errorf("%s: %v, want %s naming %q", c.name, err, c.kind, c.want)
		}
	}
}

func TestContract(t *testing.T) {
	img := tensorInfo{Name: "image", Tensor: true, Float: true, Dims: []int64{1, 3, -1, -1}}
	mask := tensorInfo{Name: "mask", Tensor: true, Float: true, Dims: []int64{1, 1, -1, -1}}
	out := tensorInfo{Name: "output", Tensor: true, Float: true, Dims: []int64{1, 3, -1, -1}}
	s, err := contract([]tensorInfo{mask, img}, []tensorInfo{out})
	if err != nil || *s != (signature{Image: "image", Mask: "mask", Output: "output"}) {
		t.Fatalf("contract = %+v, %v", s, err)
	}
	fixed := img
	fixed.Dims = []int64{1, 3, 512, 512}
	s, err = contract([]tensorInfo{fixed, mask}, []tensorInfo{out})
	if err != nil || !s.ImageFirst || s.FixedW != 512 || s.FixedH != 512 {
		t.Fatalf("fixed contract = %+v, %v", s, err)
	}
	if w, h, err := s.paddedSize(500, 37); err != nil || w != 512 || h != 512 {
		t.Errorf("paddedSize(500, 37) at fixed 512 = %d, %d, %v", w, h, err)
	}
	if _, _, err := s.paddedSize(513, 37); plugins.AsJobError(err) == nil {
		t.Errorf("paddedSize above the fixed size: %v, want bad_input", err)
	}
	dyn := &signature{}
	if w, h, _ := dyn.paddedSize(37, 21); w != 40 || h != 24 {
		t.Errorf("paddedSize(37, 21) = %d, %d; want 40, 24", w, h)
	}
	with := func(t tensorInfo, f func(*tensorInfo)) tensorInfo { f(&t); return t }
	for _, c := range []struct {
		name      string
		ins, outs []tensorInfo
		want      string
	}{
		{"one input", []tensorInfo{img}, []tensorInfo{out}, "1 inputs"},
		{"three inputs", []tensorInfo{img, mask, mask}, []tensorInfo{out}, "3 inputs"},
		{"two outputs", []tensorInfo{img, mask}, []tensorInfo{out, out}, "2 outputs"},
		{"rank 3", []tensorInfo{with(img, func(t *tensorInfo) { t.Dims = []int64{3, -1, -1} }), mask}, []tensorInfo{out}, "rank 3"},
		{"int mask", []tensorInfo{img, with(mask, func(t *tensorInfo) { t.Float = false })}, []tensorInfo{out}, "float32"},
		{"two images", []tensorInfo{img, img}, []tensorInfo{out}, "3 and 3 channels"},
		{"batch 2", []tensorInfo{with(img, func(t *tensorInfo) { t.Dims = []int64{2, 3, -1, -1} }), mask}, []tensorInfo{out}, "batch 2"},
		{"output 1 channel", []tensorInfo{img, mask}, []tensorInfo{with(out, func(t *tensorInfo) { t.Dims = []int64{1, 1, -1, -1} })}, "1 channels"},
	} {
		_, err := contract(c.ins, c.outs)
		if je := plugins.AsJobError(err); je == nil || je.Kind != plugins.ErrBadInput || !strings.Contains(je.Message, c.want) {
			t.Errorf("%s: %v, want bad_input naming %q", c.name, err, c.want)
		}
	}
}

// TestPadding: the padded tensors mirror the edge symmetrically (numpy's
// "symmetric", LaMa's pad_img_to_modulo) on the bottom and right, even past
// the image's own size; the mask is binarised at half grey.
func TestPadding(t *testing.T) {
	if got := []int{mirror(0, 3), mirror(2, 3), mirror(3, 3), mirror(5, 3), mirror(6, 3), mirror(7, 3)}; got[0] != 0 || got[1] != 2 || got[2] != 2 || got[3] != 0 || got[4] != 0 || got[5] != 1 {
		t.Errorf("mirror over 3 = %v, want [0 2 2 0 0 1]", got)
	}
	m := image.NewNRGBA(image.Rect(0, 0, 3, 1))
	for x := 0; x < 3; x++ {
		m.SetNRGBA(x, 0, color.NRGBA{uint8(x * 100), 0, 0, 255})
	}
	d := imageTensor(m, 8, 2)
	want := []float32{0, 100, 200, 200, 100, 0, 0, 100}
	for i, v := range want {
		if d[i] != v/255 || d[8+i] != v/255 {
			t.Fatalf("padded red row = %v, want %v/255 twice", d[:16], want)
		}
	}
	k := image.NewGray(image.Rect(0, 0, 2, 1))
	k.SetGray(0, 0, color.Gray{128})
	k.SetGray(1, 0, color.Gray{127})
	if got := maskTensor(k, 4, 1); got[0] != 1 || got[1] != 0 || got[2] != 0 || got[3] != 1 {
		t.Errorf("mask = %v, want [1 0 0 1]", got)
	}
	out, err := outputImage([]float32{-1, 0.5, 2, 0, 0, 0, 0, 0, 0}, 3, 1, 2, 1)
	if err != nil || out.Pix[0] != 0 || out.Pix[4] != 128 || out.Bounds().Dx() != 2 {
		t.Errorf("outputImage = %v, %v", out.Pix, err)
	}
}

// TestToNRGBA: every image type (and a sub-image not at 0,0) gives the
// pixels the colour model gives, and the mask the same binarisation.
func TestToNRGBA(t *testing.T) {
	rgba := image.NewRGBA(image.Rect(0, 0, 4, 3))
	for i := range rgba.Pix {
		rgba.Pix[i] = uint8(i * 13)
	}
	for i := 3; i < len(rgba.Pix); i += 4 {
		rgba.Pix[i] = max(rgba.Pix[i], rgba.Pix[i-1], rgba.Pix[i-2], rgba.Pix[i-3]) // valid premultiplied
	}
	rgba.Pix[3] = 255
	ycc := image.NewYCbCr(image.Rect(0, 0, 4, 3), image.YCbCrSubsampleRatio420)
	for i := range ycc.Y {
		ycc.Y[i] = uint8(i * 20)
	}
	nrgba := image.NewNRGBA(image.Rect(0, 0, 4, 3))
	copy(nrgba.Pix, rgba.Pix)
	for _, m := range []image.Image{rgba, ycc, nrgba, rgba.SubImage(image.Rect(1, 1, 4, 3)), nrgba.SubImage(image.Rect(1, 1, 4, 3))} {
		n := toNRGBA(m)
		b := m.Bounds()
		if n.Rect != image.Rect(0, 0, b.Dx(), b.Dy()) {
			t.Fatalf("%T: bounds %v, want %v at 0,0", m, n.Rect, b)
		}
		for y := 0; y < b.Dy(); y++ {
			for x := 0; x < b.Dx(); x++ {
				want := color.NRGBAModel.Convert(m.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA)
				if got := n.NRGBAAt(x, y); got != want {
					t.Fatalf("%T at %d,%d: %v, want %v", m, x, y, got, want)
				}
			}
		}
		mask := maskTensor(m, b.Dx(), b.Dy())
		for y := 0; y < b.Dy(); y++ {
			for x := 0; x < b.Dx(); x++ {
				want := float32(0)
				if color.GrayModel.Convert(m.At(b.Min.X+x, b.Min.Y+y)).(color.Gray).Y > 127 {
					want = 1
				}
				if mask[y*b.Dx()+x] != want {
					t.Fatalf("%T mask at %d,%d: %v, want %v", m, x, y, mask[y*b.Dx()+x], want)
				}
			}
		}
	}
}

func TestOptionsFromEnv(t *testing.T) {
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	o, err := optionsFromEnv(env(envLibrary, "/x/libonnxruntime.so", envThreads, "3", envMemoryBudget, "100", envProvider, "CUDA"))
	if err != nil || o.Library != "/x/libonnxruntime.so" || o.Threads != 3 || o.MemoryBudget != 100<<20 || o.Provider != "cuda" {
		t.Fatalf("optionsFromEnv = %+v, %v", o, err)
	}
	o, err = optionsFromEnv(env(envEnginesDir, t.TempDir()))
	if err != nil || o.Provider != "cpu" || o.MemoryBudget != defaultMemoryBudget || o.Library != "libonnxruntime.so" {
		t.Fatalf("defaults = %+v, %v", o, err)
	}
	for _, kv := range [][2]string{{envThreads, "0"}, {envMemoryBudget, "lots"}, {envProvider, "rocm"}} {
		if _, err := optionsFromEnv(env(kv[0], kv[1])); err == nil || !strings.Contains(err.Error(), kv[0]) {
			t.Errorf("%s=%s: %v, want an error naming it", kv[0], kv[1], err)
		}
	}
}

// TestLibraryPath: the engines cache's pointer, its onnxruntime.pc's
// libfile, the prefix's lib/libonnxruntime.so without one, and "system".
func TestLibraryPath(t *testing.T) {
	dir := t.TempDir()
	prefix := filepath.Join(dir, "onnxruntime-1.30.0")
	os.MkdirAll(filepath.Join(dir, "current"), 0o755)
	os.MkdirAll(filepath.Join(prefix, "lib", "pkgconfig"), 0o755)
	os.WriteFile(filepath.Join(dir, "current", "onnxruntime"), []byte(prefix+"\n"), 0o644)
	get := func(k string) string {
		if k == envEnginesDir {
			return dir
		}
		return ""
	}
	if got, want := libraryPath(get), filepath.Join(prefix, "lib", "libonnxruntime.so"); got != want {
		t.Errorf("without a .pc: %q, want %q", got, want)
	}
	os.WriteFile(filepath.Join(prefix, "lib", "pkgconfig", "onnxruntime.pc"), []byte("prefix="+prefix+"\nlibfile=/elsewhere/libonnxruntime.so.1.30.0\n\nName: onnxruntime\n"), 0o644)
	if got := libraryPath(get); got != "/elsewhere/libonnxruntime.so.1.30.0" {
		t.Errorf("with a .pc: %q", got)
	}
	os.WriteFile(filepath.Join(dir, "current", "onnxruntime"), []byte("system\n"), 0o644)
	if got := libraryPath(get); got != "libonnxruntime.so" {
		t.Errorf("system: %q", got)
	}
}

// TestReleaseLibrary: in a release, lib/libonnxruntime.so.1 beside bin/.
func TestReleaseLibrary(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "bin"), 0o755)
	if got := releaseLibrary(filepath.Join(dir, "bin")); got != "" {
		t.Errorf("without lib/: %q", got)
	}
	os.MkdirAll(filepath.Join(dir, "lib"), 0o755)
	os.WriteFile(filepath.Join(dir, "lib", "libonnxruntime.so.1.30.0"), nil, 0o644)
	os.Symlink("libonnxruntime.so.1.30.0", filepath.Join(dir, "lib", "libonnxruntime.so.1"))
	if got, want := releaseLibrary(filepath.Join(dir, "bin")), filepath.Join(dir, "lib", "libonnxruntime.so.1"); got != want {
		t.Errorf("release: %q, want %q", got, want)
	}
}
