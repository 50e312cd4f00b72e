package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stokerhq/stoker/llamacpp-plugin/gbnf"
	"github.com/stokerhq/stoker/llamacpp-plugin/gguf"
	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/plugins/residency"
)

// Identity of the plugin, as Describe reports it.
const (
	pluginName    = "llamacpp"
	pluginVersion = "0.1.0"
	engineID      = "llama-cpp"
)

// Defaults of the engine. The supervisor passes no configuration to a
// plugin (design: "never reads the supervisor's config"), so these are
// constants, kept in fields of [engine] so tests can change them.
const (
	// defaultMemoryBudget bounds the memory held by resident models (weights
	// plus KV cache). Loading a model beyond it evicts the least recently
	// used idle models first; a single model larger than the budget is still
	// loaded, alone.
	defaultMemoryBudget = 24 << 30
	// defaultContextSize is the KV-cache size when cliDefaults.contextSize
	// is absent (spec §6.3), capped at the model's trained context.
	defaultContextSize = 8192
	// promptChunk is how many prompt tokens one llama_decode call takes
	// (llama.cpp's default micro-batch, so chunking changes no arithmetic).
	promptChunk = 512
)

// engine is the llama.cpp engine: it implements plugins.Engine and
// plugins.ModelManager. Models stay loaded between jobs in a residency set
// keyed by model id and file path, evicted least-recently-used to stay under
// defaultMemoryBudget. Jobs on one model are serialised (a llama.cpp context
// is not safe for concurrent use); jobs on different models may run
// concurrently.
type engine struct {
	log     hclog.Logger
	threads int // CPU threads for decoding (default defaultThreads())
	// gpuLayers is how many of a model's layers go to the GPU when the
	// library has a GPU device (STOKER_LLAMA_GPU_LAYERS; default -1: all).
	gpuLayers int
	now       func() time.Time

	models *residency.Set[*entry] // the resident models

	describeOnce sync.Once // logs the device at the first Describe
}

// entry is one resident model.
type entry struct {
	m   *llamaModel
	run sync.Mutex // serialises jobs on m
}

// defaultThreads leaves one CPU to the plugin's Go side (the gRPC stream,
// progress events): with every CPU held by llama.cpp's spinning OpenMP
// threads, the pipeline benchmark on a 2-CPU machine decoded about five
// times slower at 2 threads than at 1 (supervisor/internal/agent,
// BenchmarkPipelineLlama).
func defaultThreads() int { return max(1, runtime.NumCPU()-1) }

// newEngine returns an engine with the default budget and thread count.
func newEngine(log hclog.Logger) *engine {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	e := &engine{
		log:       log,
		threads:   defaultThreads(),
		gpuLayers: -1,
		now:       time.Now,
	}
	e.models = residency.New(func(ent *entry) { ent.m.free() }, residency.Options{
		Budget: defaultMemoryBudget,
		Now:    func() time.Time { return e.now() },
		Logger: log,
	})
	return e
}

var (
	_ plugins.Engine       = (*engine)(nil)
	_ plugins.ModelManager = (*engine)(nil)
)

// Describe reports the plugin; Ready is false when the binary was built
// without llama.cpp (no llamacpp build tag).
func (e *engine) Describe(ctx context.Context) (*plugins.Description, error) {
	dev, ready, reason := backendInfo()
	e.describeOnce.Do(func() {
		e.log.Info("compute device", "backend", dev.Backend, "name", dev.Name, "memory_total", dev.MemoryTotal,
			"ggml_backends", backendNames(), "gpu_layers", e.gpuLayers)
	})
	return &plugins.Description{
		Name:            pluginName,
		Version:         pluginVersion,
		ContractVersion: plugins.ContractVersion,
		Engines:         []string{engineID},
		Kinds:           []plugins.TaskKind{plugins.KindLLM},
		Models:          map[plugins.TaskKind][]string{plugins.KindLLM: {engineID + ":*"}},
		Device:          dev,
		Ready:           ready,
		NotReadyReason:  reason,
	}, nil
}

// Run serves one llm job: it validates the request, makes the model
// resident (loading it only if it is not), renders the chat template,
// generates and reports the spec §7.2 result through ev.Result.
func (e *engine) Run(ctx context.Context, req *plugins.RunRequest, ev plugins.Events) error {
	if req.Task.Kind != plugins.KindLLM || req.Task.LLM == nil {
		return plugins.Errorf(plugins.ErrUnsupported, "cannot serve %s: the llama-cpp engine serves llm", req.Task.Kind)
	}
	if req.Engine != "" && req.Engine != engineID {
		return plugins.Errorf(plugins.ErrUnsupported, "cannot serve engine %q: this plugin is %s", req.Engine, engineID)
	}
	task := req.Task.LLM
	if len(task.Messages) == 0 {
		return plugins.Errorf(plugins.ErrBadInput, "llm task has no messages")
	}
	var grammar string
	if len(task.JSONSchema) > 0 {
		g, err := gbnf.FromJSONSchema(task.JSONSchema)
		if err != nil {
			return plugins.Errorf(plugins.ErrBadInput, "jsonSchema: %w", err)
		}
		grammar = g
	}
	if len(task.ChatTemplateKwargs) > 0 || len(req.Defaults.ChatTemplateKwargs) > 0 {
		// llama.cpp's template API renders its built-in templates and has
		// no variables; say so rather than pretend.
		_ = ev.Log("warn", "chatTemplateKwargs ignored: llama.cpp's chat template API takes no template variables")
	}
	path := req.File("model")
	if path == "" && len(req.Files) == 1 {
		path = req.Files[0].Path
	}
	if path == "" {
		return plugins.Errorf(plugins.ErrBadInput, "no model file with role \"model\"")
	}

	h, err := e.acquire(ctx, req.Model, path, ev)
	if err != nil {
		return err
	}
	defer h.Release()
	ent := h.Value()
	ent.run.Lock()
	defer ent.run.Unlock()
	if err := ctx.Err(); err != nil {
		return errCancelled(err)
	}
	return e.chat(ctx, req, ent, grammar, ev)
}

// acquire returns the resident model for model/path, loading it when
// absent; the caller must release the handle. Resident models are keyed by
// studio id and file path: the same id with a new file (a re-published
// model) is a different model.
func (e *engine) acquire(ctx context.Context, model, path string, ev plugins.Events) (*residency.Handle[*entry], error) {
	// The set loads outside its lock: a load takes seconds on real models,
	// and Describe/Resident must answer meanwhile.
	h, err := e.models.Acquire(ctx, residency.Key{Model: model, Identity: path}, func(ctx context.Context) (*entry, uint64, error) {
		if err := checkModelFile(path); err != nil {
			return nil, 0, err
		}
		_ = ev.Log("info", fmt.Sprintf("loading model %s from %s", model, path))
		start := e.now()
		m, err := loadModel(ctx, path, e.gpuLayers, e.log)
		if err != nil {
			return nil, 0, err
		}
		bytes := m.sizeBytes(defaultContextSize)
		e.log.Info("model loaded", "model", model, "path", path, "bytes", bytes, "elapsed", e.now().Sub(start),
			"gpu_layers", fmt.Sprintf("%d/%d", m.offloaded, m.layers))
		if m.layers > 0 {
			_ = ev.Log("info", fmt.Sprintf("model %s: %d of %d layers on the GPU", model, m.offloaded, m.layers))
		}
		return &entry{m: m}, bytes, nil
	})
	if err == nil {
		return h, nil
	}
	// The load's own errors are typed; the set's are a wait for another
	// job's load of this model cut short, or a closed engine.
	var je *plugins.JobError
	if errors.As(err, &je) {
		return nil, err
	}
	if ctx.Err() != nil {
		return nil, errCancelled(err)
	}
	return nil, plugins.Errorf(plugins.ErrEngine, "loading model %s: %w", model, err)
}

// Resident lists the models held now, most recently used first.
func (e *engine) Resident(ctx context.Context) ([]plugins.ResidentModel, error) {
	return e.models.Resident(), nil
}

// Unload frees every resident copy of model (any file path). A model in use
// is freed when its job ends. Unloading a model that is not resident is not
// an error.
func (e *engine) Unload(ctx context.Context, model string) error {
	e.models.Unload(model)
	return nil
}

// Close frees every resident model; a model still in use is freed when its
// job ends. It may be called more than once; jobs after it fail.
func (e *engine) Close() { e.models.Close() }

// checkModelFile gives clear errors for a missing, unreadable or non-GGUF
// model file before llama.cpp sees it. A missing file is a local problem
// (retryable elsewhere); a file that is not a valid GGUF is bad input.
func checkModelFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return plugins.Errorf(plugins.ErrEngine, "open model file: %w", err)
	}
	defer f.Close()
	if _, err := gguf.ReadHeader(f); err != nil {
		return plugins.Errorf(plugins.ErrBadInput, "model file %s is not a usable GGUF: %w", path, err)
	}
	return nil
}

// modelArchitecture returns general.architecture of the GGUF at path, or ""
// when it cannot be read.
func modelArchitecture(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	h, err := gguf.ReadHeader(io.LimitReader(f, 256<<20))
	if err != nil {
		return ""
	}
	return h.Architecture()
}

// contextSize is the KV-cache size for a job: cliDefaults.contextSize or
// defaultContextSize, capped at the model's trained context.
func contextSize(requested uint32, trained int) int {
	n := int(requested)
	if n <= 0 {
		n = defaultContextSize
	}
	if trained > 0 && n > trained {
		n = trained
	}
	return n
}

// errCancelled types a cancellation.
func errCancelled(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return plugins.Errorf(plugins.ErrCancelled, "job deadline exceeded: %w", err)
	}
	return plugins.Errorf(plugins.ErrCancelled, "job cancelled: %w", err)
}
