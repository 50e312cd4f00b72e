package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stokerhq/stoker/llamacpp-plugin/gbnf"
	"github.com/stokerhq/stoker/llamacpp-plugin/gguf"
	"github.com/stokerhq/stoker/plugins"
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
	// progressInterval is the least time between two progress events during
	// generation; one more follows the last token. Prompt processing reports
	// after every chunk of promptChunk tokens.
	progressInterval = 50 * time.Millisecond
	// promptChunk is how many prompt tokens one llama_decode call takes
	// (llama.cpp's default micro-batch, so chunking changes no arithmetic).
	promptChunk = 512
)

// engine is the llama.cpp engine: it implements plugins.Engine and
// plugins.ModelManager. Models stay loaded between jobs in a residency set
// keyed by model id and file path, evicted least-recently-used to stay under
// memoryBudget. Jobs on one model are serialised (a llama.cpp context is not
// safe for concurrent use); jobs on different models may run concurrently.
type engine struct {
	log          hclog.Logger
	memoryBudget uint64 // (default defaultMemoryBudget)
	threads      int    // CPU threads for decoding (default defaultThreads())
	// progressEvery is the least time between two progress events while
	// generating (default progressInterval; 0: every token).
	progressEvery time.Duration
	now           func() time.Time

	loads atomic.Uint64 // model loads, for tests and logs

	mu       sync.Mutex        // guards resident
	resident map[string]*entry // by residency key
}

// entry is one resident model. refs counts jobs using it; an evicted entry
// is freed when its last job releases it.
type entry struct {
	key, model, path string
	m                *llamaModel
	bytes            uint64

	// guarded by engine.mu
	refs     int
	evicted  bool
	lastUsed time.Time

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
	return &engine{
		log:           log,
		memoryBudget:  defaultMemoryBudget,
		threads:       defaultThreads(),
		progressEvery: progressInterval,
		now:           time.Now,
		resident:      map[string]*entry{},
	}
}

var (
	_ plugins.Engine       = (*engine)(nil)
	_ plugins.ModelManager = (*engine)(nil)
)

// Describe reports the plugin; Ready is false when the binary was built
// without llama.cpp (no llamacpp build tag).
func (e *engine) Describe(ctx context.Context) (*plugins.Description, error) {
	dev, ready, reason := backendInfo()
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

	ent, err := e.acquire(ctx, req.Model, path, ev)
	if err != nil {
		return err
	}
	defer e.release(ent)
	ent.run.Lock()
	defer ent.run.Unlock()
	if err := ctx.Err(); err != nil {
		return errCancelled(err)
	}
	return e.chat(ctx, req, ent, grammar, ev)
}

// residencyKey keys resident models by studio id and file path: the same id
// with a new file (a re-published model) is a different model.
func residencyKey(model, path string) string { return model + "\x00" + path }

// acquire returns the resident entry for model/path, loading it when absent,
// with a reference taken; the caller must release it.
func (e *engine) acquire(ctx context.Context, model, path string, ev plugins.Events) (*entry, error) {
	key := residencyKey(model, path)
	e.mu.Lock()
	if ent, ok := e.resident[key]; ok {
		ent.refs++
		ent.lastUsed = e.now()
		e.mu.Unlock()
		return ent, nil
	}
	e.mu.Unlock()

	// Load outside the lock: a load takes seconds on real models, and
	// Describe/Resident must answer meanwhile. The supervisor runs one job
	// per plugin, so two loads of one model racing is rare; the loser frees
	// its copy below.
	if err := checkModelFile(path); err != nil {
		return nil, err
	}
	_ = ev.Log("info", fmt.Sprintf("loading model %s from %s", model, path))
	start := e.now()
	m, err := loadModel(ctx, path, e.log)
	if err != nil {
		return nil, err
	}
	e.loads.Add(1)
	ent := &entry{key: key, model: model, path: path, m: m, bytes: m.sizeBytes(defaultContextSize), refs: 1, lastUsed: e.now()}
	e.log.Info("model loaded", "model", model, "path", path, "bytes", ent.bytes, "elapsed", e.now().Sub(start))

	e.mu.Lock()
	if old, ok := e.resident[key]; ok {
		old.refs++
		old.lastUsed = e.now()
		e.mu.Unlock()
		m.free()
		return old, nil
	}
	e.resident[key] = ent
	victims := e.evictLocked(key)
	e.mu.Unlock()
	for _, v := range victims {
		e.log.Info("model evicted", "model", v.model, "bytes", v.bytes)
		v.m.free()
	}
	return ent, nil
}

// evictLocked removes least-recently-used idle models (never keep) until
// the resident set fits the budget, and returns those that can be freed now.
// Models in use are skipped; they stay until their jobs end.
func (e *engine) evictLocked(keep string) []*entry {
	var freed []*entry
	for {
		var total uint64
		var lru *entry
		for k, ent := range e.resident {
			total += ent.bytes
			if k == keep || ent.refs > 0 {
				continue
			}
			if lru == nil || ent.lastUsed.Before(lru.lastUsed) {
				lru = ent
			}
		}
		if total <= e.memoryBudget || lru == nil {
			return freed
		}
		delete(e.resident, lru.key)
		lru.evicted = true
		freed = append(freed, lru)
	}
}

// release drops a job's reference; an entry evicted meanwhile is freed by
// its last user.
func (e *engine) release(ent *entry) {
	e.mu.Lock()
	ent.refs--
	ent.lastUsed = e.now()
	free := ent.evicted && ent.refs == 0
	e.mu.Unlock()
	if free {
		ent.m.free()
	}
}

// Resident lists the models held now, most recently used first.
func (e *engine) Resident(ctx context.Context) ([]plugins.ResidentModel, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]plugins.ResidentModel, 0, len(e.resident))
	for _, ent := range e.resident {
		out = append(out, plugins.ResidentModel{Model: ent.model, Bytes: ent.bytes, LastUsedUnixMs: ent.lastUsed.UnixMilli()})
	}
	// Most recently used first, then by id.
	slices.SortFunc(out, func(a, b plugins.ResidentModel) int {
		if c := cmp.Compare(b.LastUsedUnixMs, a.LastUsedUnixMs); c != 0 {
			return c
		}
		return cmp.Compare(a.Model, b.Model)
	})
	return out, nil
}

// Unload frees every resident copy of model (any file path). A model in use
// is freed when its job ends. Unloading a model that is not resident is not
// an error.
func (e *engine) Unload(ctx context.Context, model string) error {
	var now []*entry
	e.mu.Lock()
	for k, ent := range e.resident {
		if ent.model != model {
			continue
		}
		delete(e.resident, k)
		ent.evicted = true
		if ent.refs == 0 {
			now = append(now, ent)
		}
	}
	e.mu.Unlock()
	for _, ent := range now {
		ent.m.free()
	}
	return nil
}

// Close frees every resident model; a model still in use is freed when its
// job ends. It may be called more than once.
func (e *engine) Close() {
	var now []*entry
	e.mu.Lock()
	for _, ent := range e.resident {
		ent.evicted = true
		if ent.refs == 0 {
			now = append(now, ent)
		}
	}
	e.resident = map[string]*entry{}
	e.mu.Unlock()
	for _, ent := range now {
		ent.m.free()
	}
}

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
