package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/plugins/residency"
)

// Identity of the plugin, as Describe reports it.
const (
	pluginName    = "onnx"
	pluginVersion = "0.1.0"
	engineID      = "onnx"
)

// defaultMemoryBudget bounds the memory held by resident sessions (their
// model files' sizes, a floor of what a session holds). Loading a model
// beyond it evicts the least recently used idle sessions first.
const defaultMemoryBudget = 8 << 30

// options are the plugin's settings, from the environment (optionsFromEnv);
// tests set them directly.
type options struct {
	Library      string // ONNX Runtime library to open ("": the engines cache's)
	Provider     string // execution provider: "cpu" (default) or "cuda"
	Threads      int    // intra-op threads (0: ONNX Runtime's default)
	MemoryBudget uint64 // bytes of resident models (default defaultMemoryBudget)
}

// The environment variables optionsFromEnv reads.
const (
	envLibrary      = "STOKER_ONNX_LIBRARY"
	envProvider     = "STOKER_ONNX_PROVIDER"
	envThreads      = "STOKER_ONNX_THREADS"
	envMemoryBudget = "STOKER_ONNX_MEMORY_BUDGET_MB"
	envEnginesDir   = "STOKER_ENGINES_DIR"
)

// optionsFromEnv reads the plugin's settings; a malformed value is an
// error (a typo must not silently mean the default).
func optionsFromEnv(getenv func(string) string) (options, error) {
	o := options{MemoryBudget: defaultMemoryBudget}
	num := func(name string, set func(int64)) error {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			return nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return fmt.Errorf("%s=%q: want a whole number above 0", name, v)
		}
		set(n)
		return nil
	}
	err := errors.Join(
		num(envThreads, func(n int64) { o.Threads = int(min(n, 1024)) }),
		num(envMemoryBudget, func(n int64) { o.MemoryBudget = uint64(min(n, math.MaxInt64>>20)) << 20 }),
	)
	o.Library = libraryPath(getenv)
	o.Provider = "cpu"
	switch v := strings.ToLower(strings.TrimSpace(getenv(envProvider))); v {
	case "", "cpu":
	case "cuda":
		o.Provider = v
	default:
		err = errors.Join(err, fmt.Errorf("%s=%q: want cpu or cuda", envProvider, v))
	}
	return o, err
}

// libraryPath is the ONNX Runtime library the plugin opens:
// STOKER_ONNX_LIBRARY when set; else, in a release (scripts/release.sh),
// lib/libonnxruntime.so.1 beside the plugin's bin/ directory; else the one scripts/engines/onnx.sh
// registered in the engines cache ($STOKER_ENGINES_DIR, default
// ~/.cache/stoker/engines): current/onnxruntime names a prefix whose
// lib/pkgconfig/onnxruntime.pc gives the file (libfile), or "system" (a
// build pkg-config found), in which case the dynamic loader's search finds
// libonnxruntime.so.
func libraryPath(getenv func(string) string) string {
	if p := strings.TrimSpace(getenv(envLibrary)); p != "" {
		return p
	}
	if exe, err := os.Executable(); err == nil {
		if p := releaseLibrary(filepath.Dir(exe)); p != "" {
			return p
		}
	}
	dir := getenv(envEnginesDir)
	if dir == "" {
		dir = getenv("HOME") + "/.cache/stoker/engines"
	}
	b, err := os.ReadFile(dir + "/current/onnxruntime")
	prefix := strings.TrimSpace(string(b))
	if err != nil || prefix == "" || prefix == "system" {
		return "libonnxruntime.so"
	}
	if pc, err := os.ReadFile(prefix + "/lib/pkgconfig/onnxruntime.pc"); err == nil {
		for _, line := range strings.Split(string(pc), "\n") {
			if v, ok := strings.CutPrefix(line, "libfile="); ok && strings.TrimSpace(v) != "" {
				return strings.TrimSpace(v)
			}
		}
	}
	return prefix + "/lib/libonnxruntime.so"
}

// releaseLibrary is ONNX Runtime in a release's lib/ directory beside the
// plugin's bin/ directory binDir, or "" when there is none.
func releaseLibrary(binDir string) string {
	p := filepath.Join(binDir, "..", "lib", "libonnxruntime.so.1")
	if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
		return filepath.Clean(p)
	}
	return ""
}

// engine is the ONNX Runtime engine: it implements plugins.Engine and
// plugins.ModelManager. Sessions stay resident between jobs, keyed by the
// model id and its file.
type engine struct {
	log    hclog.Logger
	opt    options
	models *residency.Set[*model]

	mu   sync.Mutex // guards last
	last timings
}

// timings are where one job's time went, for the log and the benchmarks.
type timings struct {
	Decode  time.Duration // the input files decoded
	Load    time.Duration // the session made resident
	Prepare time.Duration // the padded tensors made
	Run     time.Duration // ONNX Runtime's run (tensors in, output out)
	Encode  time.Duration // the output cropped, converted and encoded
	Loaded  bool          // the job loaded its model
}

func (tm timings) String() string {
	load := "resident"
	if tm.Loaded {
		load = "loaded in " + tm.Load.Round(time.Millisecond).String()
	}
	return fmt.Sprintf("model %s, decode %s, tensors %s, run %s, encode %s", load,
		tm.Decode.Round(time.Millisecond), tm.Prepare.Round(time.Millisecond), tm.Run.Round(time.Millisecond), tm.Encode.Round(time.Millisecond))
}

// newEngine returns an engine with options o (zero fields: defaults).
func newEngine(log hclog.Logger, o options) *engine {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if o.MemoryBudget == 0 {
		o.MemoryBudget = defaultMemoryBudget
	}
	if o.Library == "" {
		o.Library = libraryPath(os.Getenv)
	}
	if o.Provider == "" {
		o.Provider = "cpu"
	}
	e := &engine{log: log, opt: o}
	e.models = residency.New(func(m *model) { m.free() }, residency.Options{Budget: o.MemoryBudget, Logger: log})
	return e
}

var (
	_ plugins.Engine       = (*engine)(nil)
	_ plugins.ModelManager = (*engine)(nil)
)

// Describe reports the plugin; Ready is false when the binary was built
// without the onnx tag or ONNX Runtime cannot be opened (the reason says
// which library and why).
func (e *engine) Describe(ctx context.Context) (*plugins.Description, error) {
	ready, reason := engineStatus(e.opt.Library, e.opt.Provider)
	return &plugins.Description{
		Name:            pluginName,
		Version:         pluginVersion,
		ContractVersion: plugins.ContractVersion,
		Engines:         []string{engineID},
		Kinds:           []plugins.TaskKind{plugins.KindImage},
		Models:          map[plugins.TaskKind][]string{plugins.KindImage: {engineID + ":*"}},
		Device:          plugins.HostDevice(e.opt.Provider),
		Ready:           ready,
		NotReadyReason:  reason,
	}, nil
}

// The progress steps of a job ("stage" units): inputs decoded, model
// resident, inference done, image encoded.
const stages = 4

// Run serves one object removal: it decodes the image and the mask, makes
// the model resident, pads both to the model's multiple, runs the model
// and streams the cropped result through ev.Output.
func (e *engine) Run(ctx context.Context, req *plugins.RunRequest, ev plugins.Events) error {
	j, err := resolve(req)
	if err != nil {
		return err
	}
	if st, err := os.Stat(j.Model); err != nil {
		return plugins.Errorf(plugins.ErrEngine, "model file: %w", err)
	} else if !st.Mode().IsRegular() {
		return plugins.Errorf(plugins.ErrEngine, "model file %s is not a regular file", j.Model)
	}
	var tm timings
	start := time.Now()
	img, err := decodeFile("image", j.Image)
	if err != nil {
		return err
	}
	mask, err := decodeFile("mask", j.Mask)
	if err != nil {
		return err
	}
	w, h := img.Bounds().Dx(), img.Bounds().Dy()
	if mw, mh := mask.Bounds().Dx(), mask.Bounds().Dy(); mw != w || mh != h {
		return plugins.Errorf(plugins.ErrBadInput, "mask is %dx%d, the image %dx%d: they must be the same size", mw, mh, w, h)
	}
	tm.Decode = time.Since(start)
	_ = ev.Progress(1, stages, "stage")
	if err := ctx.Err(); err != nil {
		return plugins.Cancelled(err)
	}

	start = time.Now()
	key := residency.Key{Model: req.Model, Identity: j.Model}
	hd, err := e.models.Acquire(ctx, key, func(ctx context.Context) (*model, uint64, error) {
		_ = ev.Log("info", fmt.Sprintf("loading model %s", req.Model))
		m, err := loadModel(e.opt.Library, e.opt.Provider, j.Model, e.opt.Threads)
		if err != nil {
			return nil, 0, err
		}
		tm.Loaded = true
		e.log.Info("model loaded", "model", req.Model, "file", j.Model, "elapsed", time.Since(start))
		var size uint64
		if st, err := os.Stat(j.Model); err == nil {
			size = uint64(st.Size())
		}
		return m, size, nil
	})
	if err != nil {
		return err
	}
	defer hd.Release()
	tm.Load = time.Since(start)
	m := hd.Value()
	pw, ph, err := m.sig.paddedSize(w, h)
	if err != nil {
		return err
	}
	_ = ev.Progress(2, stages, "stage")

	start = time.Now()
	it, mt := imageTensor(img, pw, ph), maskTensor(mask, pw, ph)
	tm.Prepare = time.Since(start)
	start = time.Now()
	out, err := m.run(ctx, it, mt, pw, ph, ev)
	if err != nil {
		return err
	}
	tm.Run = time.Since(start)
	_ = ev.Progress(3, stages, "stage")

	start = time.Now()
	res, err := outputImage(out, pw, ph, w, h)
	if err != nil {
		return plugins.Errorf(plugins.ErrEngine, "model output: %w", err)
	}
	data, err := encode(res, j.Ext)
	if err != nil {
		return plugins.Errorf(plugins.ErrEngine, "encode %s: %w", j.Ext, err)
	}
	tm.Encode = time.Since(start)
	e.mu.Lock()
	e.last = tm
	e.mu.Unlock()
	e.log.Info("image filled", "model", req.Model, "size", fmt.Sprintf("%dx%d", w, h), "padded", fmt.Sprintf("%dx%d", pw, ph),
		"loaded", tm.Loaded, "decode", tm.Decode, "load", tm.Load, "prepare", tm.Prepare, "run", tm.Run, "encode", tm.Encode)
	_ = ev.Log("info", fmt.Sprintf("filled %dx%d (run at %dx%d): %s", w, h, pw, ph, tm))
	_ = ev.Progress(stages, stages, "stage")
	if err := ev.Output(j.Ext, data); err != nil {
		return plugins.Cancelled(err)
	}
	return nil
}

// lastTimings returns the timings of the last job that succeeded.
func (e *engine) lastTimings() timings {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.last
}

// Resident lists the models held now, most recently used first.
func (e *engine) Resident(ctx context.Context) ([]plugins.ResidentModel, error) {
	return e.models.Resident(), nil
}

// Unload frees every resident session of model; one in use is freed when
// its job ends.
func (e *engine) Unload(ctx context.Context, model string) error {
	e.models.Unload(model)
	return nil
}

// Close frees every resident session. It may be called more than once.
func (e *engine) Close() { e.models.Close() }
