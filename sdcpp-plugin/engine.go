package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
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
	pluginName    = "sdcpp"
	pluginVersion = "0.1.0"
	engineID      = "sd-cpp"
)

// webpQuality is the quality sd-cli writes .webp at; with the same libwebp
// the plugin's WebP is byte for byte sd-cli's image data.
const webpQuality = 90

// defaultMemoryBudget bounds the memory held by resident contexts (their
// model files' sizes: the weights are read into memory whole). Loading a
// model beyond it evicts the least recently used idle contexts first; a
// single model larger than the budget is still loaded, alone.
const defaultMemoryBudget = 24 << 30

// options are the plugin's settings. The supervisor passes no
// configuration to a plugin; these come from the environment
// (optionsFromEnv) and tests set them directly.
type options struct {
	Threads      int    // CPU threads (0: the engine's default, the physical cores)
	MemoryBudget uint64 // bytes of resident models (default defaultMemoryBudget)
	Limits       limits // (default defaultLimits)
}

// The environment variables optionsFromEnv reads.
const (
	envThreads       = "STOKER_SDCPP_THREADS"
	envMemoryBudget  = "STOKER_SDCPP_MEMORY_BUDGET_MB"
	envMaxPixelSteps = "STOKER_SDCPP_MAX_PIXEL_STEPS"
	envMaxSide       = "STOKER_SDCPP_MAX_SIDE"
)

// optionsFromEnv reads the plugin's settings; a malformed value is an
// error (a typo must not silently mean the default).
func optionsFromEnv(getenv func(string) string) (options, error) {
	o := options{MemoryBudget: defaultMemoryBudget, Limits: defaultLimits}
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
		num(envMaxPixelSteps, func(n int64) { o.Limits.MaxPixelSteps = n }),
		num(envMaxSide, func(n int64) { o.Limits.MaxSide = int(min(n, 1<<20)) }),
	)
	return o, err
}

// engine is the stable-diffusion.cpp engine: it implements plugins.Engine
// and plugins.ModelManager. Loaded contexts stay resident between jobs,
// keyed by their files and the options that shape them.
//
// stable-diffusion.cpp reports progress and log lines through process-wide
// callbacks, so the engine makes one engine call (a load or a generation)
// at a time; the supervisor sends one job at a time per plugin anyway.
type engine struct {
	log        hclog.Logger
	opt        options
	models     *residency.Set[*sdContext]
	randomSeed func() int64

	call sync.Mutex // held for each engine call: the callbacks are process-wide

	mu   sync.Mutex // guards last
	last timings
}

// timings are where one job's time went, for the log and the benchmarks.
type timings struct {
	Load, Sample, Decode, Encode time.Duration
	// EngineSampling is the sampling alone, as the engine measures and
	// logs it (Sample adds the text encoding before it).
	EngineSampling time.Duration
	Loaded         bool // the job loaded its model
}

// String is the job's timing line in its log.
func (tm timings) String() string {
	load := "resident"
	if tm.Loaded {
		load = "loaded in " + tm.Load.Round(time.Millisecond).String()
	}
	return fmt.Sprintf("model %s, encode+sample %s (sampling %.2fs), decode %s, image encode %s", load,
		tm.Sample.Round(time.Millisecond), tm.EngineSampling.Seconds(), tm.Decode.Round(time.Millisecond), tm.Encode.Round(10*time.Microsecond))
}

// newEngine returns an engine with options o (zero fields: defaults).
func newEngine(log hclog.Logger, o options) *engine {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if o.MemoryBudget == 0 {
		o.MemoryBudget = defaultMemoryBudget
	}
	if o.Limits == (limits{}) {
		o.Limits = defaultLimits
	}
	e := &engine{log: log, opt: o, randomSeed: randomSeed}
	e.models = residency.New(func(c *sdContext) { c.free() }, residency.Options{Budget: o.MemoryBudget, Logger: log})
	return e
}

var (
	_ plugins.Engine       = (*engine)(nil)
	_ plugins.ModelManager = (*engine)(nil)
)

// Describe reports the plugin; Ready is false when the binary was built
// without stable-diffusion.cpp (no sdcpp build tag).
func (e *engine) Describe(ctx context.Context) (*plugins.Description, error) {
	ready, reason := engineStatus()
	return &plugins.Description{
		Name:            pluginName,
		Version:         pluginVersion,
		ContractVersion: plugins.ContractVersion,
		Engines:         []string{engineID},
		Kinds:           []plugins.TaskKind{plugins.KindImage},
		Models:          map[plugins.TaskKind][]string{plugins.KindImage: {engineID + ":*"}},
		Device:          plugins.HostDevice("cpu"),
		Ready:           ready,
		NotReadyReason:  reason,
	}, nil
}

// Run serves one image job: it resolves the request (spec §6.5), loads the
// input images, makes the model resident (loading it only if it is not),
// generates, and streams the encoded image through ev.Output.
func (e *engine) Run(ctx context.Context, req *plugins.RunRequest, ev plugins.Events) error {
	j, err := resolve(req, e.opt.Limits, e.randomSeed)
	if err != nil {
		return err
	}
	if !j.SeedChosen {
		_ = ev.Log("info", fmt.Sprintf("no seed given: using random seed %d", j.Seed))
	}
	if err := checkFiles(j); err != nil {
		return err
	}
	if err := checkVocabularies(j, missingVocabularies()); err != nil {
		return err
	}
	imgs, err := loadJobImages(j)
	if err != nil {
		return err
	}
	defer imgs.release()

	e.call.Lock()
	defer e.call.Unlock()
	if err := ctx.Err(); err != nil {
		return plugins.Cancelled(err)
	}
	var tm timings
	start := time.Now()
	key := residency.Key{Model: req.Model, Identity: j.Key.String()}
	h, err := e.models.Acquire(ctx, key, func(ctx context.Context) (*sdContext, uint64, error) {
		_ = ev.Log("info", fmt.Sprintf("loading model %s", req.Model))
		c, err := loadContext(j.Key, e.opt.Threads, newObserver(e.log, ev))
		if err != nil {
			return nil, 0, err
		}
		tm.Loaded = true
		e.log.Info("model loaded", "model", req.Model, "files", j.Key.String(), "elapsed", time.Since(start))
		return c, filesSize(j.Key.paths()), nil
	})
	if err != nil {
		return err
	}
	defer h.Release()
	tm.Load = time.Since(start)
	if err := ctx.Err(); err != nil {
		return plugins.Cancelled(err)
	}

	obs := newObserver(e.log, ev)
	img, err := h.Value().generate(ctx, j, imgs, obs)
	if err != nil {
		return err
	}
	tm.Sample, tm.Decode = obs.split(time.Now())
	tm.EngineSampling = obs.engineSampled()

	start = time.Now()
	var out []byte
	if j.Ext == "png" {
		out, err = encodePNG(img)
	} else {
		out, err = encodeWebP(img, webpQuality)
	}
	if err != nil {
		return plugins.Errorf(plugins.ErrEngine, "encode %s: %w", j.Ext, err)
	}
	tm.Encode = time.Since(start)
	e.mu.Lock()
	e.last = tm
	e.mu.Unlock()
	e.log.Info("image generated", "model", req.Model, "mode", j.Mode.String(), "size", fmt.Sprintf("%dx%d", img.Width, img.Height),
		"steps", j.Steps, "seed", j.Seed, "loaded", tm.Loaded, "load", tm.Load, "sample", tm.Sample, "engine_sampling", tm.EngineSampling,
		"decode", tm.Decode, "encode", tm.Encode)
	_ = ev.Log("info", fmt.Sprintf("%s %dx%d, %d steps, seed %d: %s", j.Mode, img.Width, img.Height, j.Steps, j.Seed, tm))
	if err := ev.Output(j.Ext, out); err != nil {
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

// Unload frees every resident context of model. A context in use is freed
// when its job ends. Unloading a model that is not resident is not an
// error.
func (e *engine) Unload(ctx context.Context, model string) error {
	e.models.Unload(model)
	return nil
}

// Close frees every resident context; one still in use is freed when its
// job ends. It may be called more than once.
func (e *engine) Close() { e.models.Close() }

// checkFiles gives a clear error for a model file that is not there (the
// supervisor fetched it: a local problem, retryable elsewhere).
func checkFiles(j *job) error {
	for _, p := range append(j.Key.paths(), j.LoRAs...) {
		st, err := os.Stat(p)
		if err != nil {
			return plugins.Errorf(plugins.ErrEngine, "model file: %w", err)
		}
		if !st.Mode().IsRegular() {
			return plugins.Errorf(plugins.ErrEngine, "model file %s is not a regular file", p)
		}
	}
	return nil
}

// loadJobImages loads the job's input images at the job's size, as sd-cli
// loads them: init and mask resized to the size, the reference image as it
// is. Without a mask, an all-white one (what sd-cli passes).
func loadJobImages(j *job) (*jobImages, error) {
	imgs := &jobImages{}
	var err error
	load := func(what, path string, w, h, channels int) *rgbImage {
		if err != nil || path == "" {
			return nil
		}
		var m *rgbImage
		if m, err = loadImage(path, w, h, channels); err != nil {
			var je *plugins.JobError
			if !errors.As(err, &je) {
				err = plugins.Errorf(plugins.ErrBadInput, "%s: %v", what, err)
			}
			return nil
		}
		return m
	}
	imgs.init = load("init image", j.InitImage, j.Width, j.Height, 3)
	imgs.ref = load("reference image", j.RefImage, 0, 0, 3)
	imgs.mask = load("mask", j.Mask, j.Width, j.Height, 1)
	if err != nil {
		imgs.release()
		return nil, err
	}
	if imgs.mask == nil {
		imgs.mask = whiteMask(j.Width, j.Height)
	}
	return imgs, nil
}

// filesSize is the total size of files: what a loaded context holds in
// memory, near enough (the weights are read whole; compute buffers for the
// image sizes a job asks for are small beside them).
func filesSize(paths []string) uint64 {
	var n uint64
	for _, p := range paths {
		if st, err := os.Stat(p); err == nil {
			n += uint64(st.Size())
		}
	}
	return n
}

// randomSeed draws a seed for a job that gives none: 63 random bits, so it
// is a valid int64 for the engine and a u64 for the studio.
func randomSeed() int64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return int64(binary.LittleEndian.Uint64(b[:]) >> 1)
}
