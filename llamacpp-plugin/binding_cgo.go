//go:build llamacpp

package main

/*
#cgo pkg-config: llama
#cgo LDFLAGS: -lggml -lggml-base -ldl
#cgo CFLAGS: -I${SRCDIR}/../internal/ggmlload
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdatomic.h>
#include "llama.h"
#include "ggml-backend.h"
#include "ggmlload.h"

extern void goLlamaLog(int level, char *text);

static void stoker_log_cb(enum ggml_log_level level, const char *text, void *ud) {
	goLlamaLog((int)level, (char *)text);
}

static void stoker_log_init(void) {
	llama_log_set(stoker_log_cb, NULL);
	stoker_ggml_load_backends();
	llama_backend_init();
}

// stoker_abort is a cancellation flag shared with llama.cpp's abort and
// load-progress callbacks; Go sets it when the job's context ends.
typedef struct { atomic_int flag; } stoker_abort;

static stoker_abort *stoker_abort_new(void) {
	stoker_abort *a = calloc(1, sizeof(stoker_abort));
	return a;
}
static void stoker_abort_set(stoker_abort *a, int v) { atomic_store(&a->flag, v); }
static bool stoker_abort_cb(void *data) { return atomic_load(&((stoker_abort *)data)->flag) != 0; }
static bool stoker_load_progress(float p, void *data) { return atomic_load(&((stoker_abort *)data)->flag) == 0; }

// stoker_load loads a model with n_gpu_layers of its layers on the GPU
// (negative: all; none without a GPU device).
static struct llama_model *stoker_load(const char *path, int n_gpu_layers, stoker_abort *a) {
	struct llama_model_params mp = llama_model_default_params();
	mp.n_gpu_layers = n_gpu_layers;
	mp.progress_callback = stoker_load_progress;
	mp.progress_callback_user_data = a;
	return llama_model_load_from_file(path, mp);
}

static struct llama_context *stoker_context(struct llama_model *m, uint32_t n_ctx, int threads, stoker_abort *a) {
	struct llama_context_params cp = llama_context_default_params();
	cp.n_ctx = n_ctx;
	cp.n_batch = n_ctx < 2048 ? n_ctx : 2048;
	cp.n_ubatch = cp.n_batch < 512 ? cp.n_batch : 512;
	cp.n_seq_max = 1;
	cp.n_threads = threads;
	cp.n_threads_batch = threads;
	cp.no_perf = true;
	cp.abort_callback = stoker_abort_cb;
	cp.abort_callback_data = a;
	return llama_init_from_model(m, cp);
}

// stoker_decode evaluates n tokens in batches of at most n_batch.
static int stoker_decode(struct llama_context *ctx, llama_token *toks, int n, int n_batch) {
	for (int i = 0; i < n; i += n_batch) {
		int k = n - i < n_batch ? n - i : n_batch;
		int rc = llama_decode(ctx, llama_batch_get_one(toks + i, k));
		if (rc != 0) return rc;
	}
	return 0;
}

// stoker_next samples the next token after the last decode and renders its
// piece into buf (without special tokens). It is one cgo call per token.
// *piece_len is negative when buf is too small (the size needed, negated).
static llama_token stoker_next(struct llama_sampler *smpl, struct llama_context *ctx,
		const struct llama_vocab *vocab, char *buf, int cap, int *piece_len, int *eog) {
	llama_token t = llama_sampler_sample(smpl, ctx, -1);
	*eog = llama_vocab_is_eog(vocab, t);
	*piece_len = *eog ? 0 : llama_token_to_piece(vocab, t, buf, cap, 0, false);
	return t;
}

// stoker_accept_decode evaluates one sampled token.
static int stoker_decode_one(struct llama_context *ctx, llama_token t) {
	return llama_decode(ctx, llama_batch_get_one(&t, 1));
}

static struct llama_sampler *stoker_sampler(const struct llama_vocab *vocab, const char *grammar,
		float temp, float top_p, uint32_t seed, int *grammar_failed) {
	struct llama_sampler_chain_params sp = llama_sampler_chain_default_params();
	sp.no_perf = true;
	struct llama_sampler *chain = llama_sampler_chain_init(sp);
	*grammar_failed = 0;
	if (grammar != NULL) {
		struct llama_sampler *g = llama_sampler_init_grammar(vocab, grammar, "root");
		if (g == NULL) {
			*grammar_failed = 1;
			llama_sampler_free(chain);
			return NULL;
		}
		llama_sampler_chain_add(chain, g);
	}
	if (temp <= 0) {
		llama_sampler_chain_add(chain, llama_sampler_init_greedy());
		return chain;
	}
	if (top_p > 0 && top_p < 1) llama_sampler_chain_add(chain, llama_sampler_init_top_p(top_p, 1));
	llama_sampler_chain_add(chain, llama_sampler_init_temp(temp));
	llama_sampler_chain_add(chain, llama_sampler_init_dist(seed));
	return chain;
}

static int stoker_device(int i, char *name, int name_cap, char *desc, int desc_cap, size_t *free, size_t *total) {
	ggml_backend_dev_t d = ggml_backend_dev_get(i);
	snprintf(name, name_cap, "%s", ggml_backend_dev_name(d));
	snprintf(desc, desc_cap, "%s", ggml_backend_dev_description(d));
	ggml_backend_dev_memory(d, free, total);
	return (int)ggml_backend_dev_type(d);
}
*/
import "C"

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/hashicorp/go-hclog"
	"github.com/stokerhq/stoker/plugins"
)

// llamaModel is a loaded llama.cpp model with its (lazily created) context.
// Its methods are not safe for concurrent use; the engine serialises jobs
// per model.
type llamaModel struct {
	path  string
	model *C.struct_llama_model
	vocab *C.struct_llama_vocab
	abort *C.stoker_abort

	// offloaded of layers are on the GPU, as llama.cpp reported while
	// loading (0 of 0 when it said nothing: no GPU device).
	offloaded, layers int

	ctx        *C.struct_llama_context // nil until the first job
	ctxSize    int
	ctxThreads int
	tmpl       *C.char // owned by the model; nil: no template in the GGUF
}

var backendOnce sync.Once

func initBackend() { backendOnce.Do(func() { C.stoker_log_init() }) }

// backendInfo reports the compute device llama.cpp uses: the first GPU when
// the library was built with one, else the CPU.
func backendInfo() (plugins.Device, bool, string) {
	initBackend()
	var dev plugins.Device
	n := int(C.ggml_backend_dev_count())
	var name, desc [256]C.char
	for i := 0; i < n; i++ {
		var free, total C.size_t
		typ := C.stoker_device(C.int(i), &name[0], 256, &desc[0], 256, &free, &total)
		isGPU := typ == C.GGML_BACKEND_DEVICE_TYPE_GPU || typ == C.GGML_BACKEND_DEVICE_TYPE_IGPU
		if dev.Backend != "" && !isGPU {
			continue
		}
		backend := "cpu"
		if isGPU {
			backend = strings.ToLower(strings.TrimRight(C.GoString(&name[0]), "0123456789"))
		}
		dev = plugins.Device{Backend: backend, Name: C.GoString(&desc[0]), MemoryTotal: uint64(total), MemoryFree: uint64(free)}
		if isGPU {
			break
		}
	}
	if dev.Backend == "" {
		dev.Backend = "cpu"
	}
	return dev, true, ""
}

// backendNames lists ggml's registered backends with their device counts
// ("Vulkan:1", "CPU:1"), for the log: a GPU build that finds no device
// shows "Vulkan:0", or no GPU backend at all when its library could not be
// loaded (a missing CUDA runtime).
func backendNames() []string {
	initBackend()
	var out []string
	for i := range int(C.ggml_backend_reg_count()) {
		r := C.ggml_backend_reg_get(C.size_t(i))
		out = append(out, fmt.Sprintf("%s:%d", C.GoString(C.ggml_backend_reg_name(r)), int(C.ggml_backend_reg_dev_count(r))))
	}
	return out
}

// loadModel loads the GGUF at path with gpuLayers of its layers on the GPU
// (negative: all of them; without a GPU device, none). Cancelling ctx
// aborts the load.
func loadModel(ctx context.Context, path string, gpuLayers int, log hclog.Logger) (*llamaModel, error) {
	initBackend()
	llamaLog.setLogger(log.Named("llama.cpp"))
	abort := C.stoker_abort_new()
	stop := context.AfterFunc(ctx, func() { C.stoker_abort_set(abort, 1) })
	defer stop()
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	mark := llamaLog.mark()
	m := C.stoker_load(cpath, C.int(gpuLayers), abort)
	if m == nil {
		C.free(unsafe.Pointer(abort))
		if err := ctx.Err(); err != nil {
			return nil, errCancelled(err)
		}
		why := llamaLog.errorsSince(mark)
		kind := plugins.ErrBadInput
		if strings.Contains(why, "alloc") || strings.Contains(why, "out of memory") {
			kind = plugins.ErrOutOfMemory
		}
		if why == "" {
			why = "no reason given"
		}
		return nil, plugins.Errorf(kind, "llama.cpp cannot load model %s (architecture %q): %s", path, modelArchitecture(path), why)
	}
	lm := &llamaModel{path: path, model: m, abort: abort}
	lm.offloaded, lm.layers = llamaLog.offloadSince(mark)
	lm.vocab = C.llama_model_get_vocab(m)
	lm.tmpl = C.llama_model_chat_template(m, nil)
	return lm, nil
}

// free releases the model and its context. It may be called once.
func (m *llamaModel) free() {
	if m.ctx != nil {
		C.llama_free(m.ctx)
		m.ctx = nil
	}
	if m.model != nil {
		C.llama_model_free(m.model)
		m.model = nil
	}
	if m.abort != nil {
		C.free(unsafe.Pointer(m.abort))
		m.abort = nil
	}
}

func (m *llamaModel) nCtxTrain() int { return int(C.llama_model_n_ctx_train(m.model)) }

// sizeBytes estimates the memory the model holds with a KV cache of nCtx
// tokens (weights plus an F16 K and V cache).
func (m *llamaModel) sizeBytes(nCtx int) uint64 {
	nCtx = contextSize(uint32(nCtx), m.nCtxTrain())
	embd := uint64(C.llama_model_n_embd(m.model))
	heads := max(uint64(C.llama_model_n_head(m.model)), 1)
	kvHeads := uint64(C.llama_model_n_head_kv(m.model))
	layers := uint64(C.llama_model_n_layer(m.model))
	kv := uint64(nCtx) * layers * 2 * (embd / heads * kvHeads) * 2
	return uint64(C.llama_model_size(m.model)) + kv
}

// applyTemplate renders msgs with the model's own chat template (ChatML when
// the GGUF has none), ending with the assistant's turn.
func (m *llamaModel) applyTemplate(msgs []plugins.Message) (string, error) {
	cmsgs := (*[1 << 20]C.struct_llama_chat_message)(C.malloc(C.size_t(len(msgs)) * C.sizeof_struct_llama_chat_message))[:len(msgs):len(msgs)]
	defer C.free(unsafe.Pointer(&cmsgs[0]))
	total := 0
	for i, msg := range msgs {
		cmsgs[i].role = C.CString(msg.Role)
		cmsgs[i].content = C.CString(msg.Content)
		total += len(msg.Role) + len(msg.Content)
	}
	defer func() {
		for i := range cmsgs {
			C.free(unsafe.Pointer(cmsgs[i].role))
			C.free(unsafe.Pointer(cmsgs[i].content))
		}
	}()
	size := 2*total + 256
	for {
		buf := (*C.char)(C.malloc(C.size_t(size)))
		n := C.llama_chat_apply_template(m.tmpl, &cmsgs[0], C.size_t(len(msgs)), true, buf, C.int32_t(size))
		if n < 0 {
			C.free(unsafe.Pointer(buf))
			name := "chatml (the GGUF has none)"
			if m.tmpl != nil {
				name = firstLine(C.GoString(m.tmpl))
			}
			return "", plugins.Errorf(plugins.ErrEngine, "chat template not supported by llama.cpp's template API: %s", name)
		}
		if int(n) <= size {
			s := C.GoStringN(buf, n)
			C.free(unsafe.Pointer(buf))
			return s, nil
		}
		C.free(unsafe.Pointer(buf))
		size = int(n)
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return s
}

// tokenize tokenizes a rendered prompt: BOS added when the model wants it,
// special tokens in the template text parsed as such.
func (m *llamaModel) tokenize(text string) ([]int32, error) {
	ctext := C.CString(text)
	defer C.free(unsafe.Pointer(ctext))
	n := len(text) + 8
	for {
		toks := make([]int32, n)
		got := C.llama_tokenize(m.vocab, ctext, C.int32_t(len(text)), (*C.llama_token)(unsafe.Pointer(&toks[0])), C.int32_t(n), true, true)
		switch {
		case got == C.INT32_MIN:
			return nil, plugins.Errorf(plugins.ErrBadInput, "prompt too long to tokenize")
		case got < 0:
			n = int(-got)
			continue
		}
		return toks[:got], nil
	}
}

// piece renders one token; special selects whether control tokens render
// as their text (as llama-simple prints them).
func (m *llamaModel) piece(tok int32, special bool) []byte {
	var buf [256]C.char
	n := C.llama_token_to_piece(m.vocab, C.llama_token(tok), &buf[0], 256, 0, C.bool(special))
	if n <= 0 {
		return nil
	}
	return C.GoBytes(unsafe.Pointer(&buf[0]), n)
}

// context returns a context of nCtx tokens with an empty KV cache,
// recreating it when the size changed.
func (m *llamaModel) context(nCtx, threads int) (*C.struct_llama_context, error) {
	if m.ctx != nil && m.ctxSize != nCtx {
		C.llama_free(m.ctx)
		m.ctx = nil
	}
	if m.ctx == nil {
		c := C.stoker_context(m.model, C.uint32_t(nCtx), C.int(threads), m.abort)
		if c == nil {
			return nil, plugins.Errorf(plugins.ErrOutOfMemory, "llama.cpp cannot create a context of %d tokens", nCtx)
		}
		m.ctx, m.ctxSize, m.ctxThreads = c, nCtx, threads
	}
	if m.ctxThreads != threads {
		C.llama_set_n_threads(m.ctx, C.int32_t(threads), C.int32_t(threads))
		m.ctxThreads = threads
	}
	C.llama_memory_clear(C.llama_get_memory(m.ctx), true)
	return m.ctx, nil
}

// generate decodes p.prompt and samples up to p.maxTokens tokens, calling
// onToken with each one's id and text piece. onToken returning errStop ends
// generation with finish "stop"; any other error ends it with that error.
// Cancelling ctx aborts promptly, even inside a long prompt decode.
func (m *llamaModel) generate(ctx context.Context, p genParams, onToken func(tok int32, piece []byte) error) (res genResult, err error) {
	if cerr := onComputeThread(ctx, func() { res, err = m.generateHere(ctx, p, onToken) }); cerr != nil {
		return genResult{}, errCancelled(cerr)
	}
	return res, err
}

// computeThread is the one OS thread every generation runs on, for the life
// of the process: a goroutine locked to it takes each call from the
// channel. With an OpenMP ggml each thread that calls into llama.cpp gets
// a pool of OpenMP workers of its own, and libgomp counts the workers of
// every pool: once they outnumber the CPUs it stops spinning at barriers
// (its throttled spin count) and each of ggml's barriers sleeps and wakes
// through the kernel. Locking whatever thread a job's goroutine was on gave
// each job a new master thread and pool (a plugin at 2 threads on 2 CPUs:
// 6 threads at start, 12 after six jobs); one thread keeps one pool, as in
// llama-simple. It is package state because the pools are the process's:
// one llama.cpp, one thread.
var computeThread = sync.OnceValue(func() chan<- func() {
	ch := make(chan func())
	go func() {
		runtime.LockOSThread() // never unlocked: the thread is this goroutine's
		for f := range ch {
			f()
		}
	}()
	return ch
})

// onComputeThread runs f on computeThread and waits for it. A call waiting
// for the thread (another generation holds it) gives up when ctx ends,
// returning ctx's error without running f.
func onComputeThread(ctx context.Context, f func()) error {
	done := make(chan struct{})
	select {
	case computeThread() <- func() { defer close(done); f() }:
	case <-ctx.Done():
		return ctx.Err()
	}
	<-done
	return nil
}

// generateHere is generate, on the calling thread.
func (m *llamaModel) generateHere(ctx context.Context, p genParams, onToken func(tok int32, piece []byte) error) (genResult, error) {
	lctx, err := m.context(p.nCtx, p.threads)
	if err != nil {
		return genResult{}, err
	}
	C.stoker_abort_set(m.abort, 0)
	// An abort makes llama.cpp log errors ("failed to decode"); they are the
	// expected echo of a cancellation, so the sink demotes them meanwhile.
	stop := context.AfterFunc(ctx, func() {
		llamaLog.quiet.Add(1)
		C.stoker_abort_set(m.abort, 1)
	})
	defer func() {
		if !stop() {
			llamaLog.quiet.Add(-1)
		}
	}()

	var cgrammar *C.char
	if p.grammar != "" {
		cgrammar = C.CString(p.grammar)
		defer C.free(unsafe.Pointer(cgrammar))
	}
	var gfail C.int
	mark := llamaLog.mark()
	smpl := C.stoker_sampler(m.vocab, cgrammar, C.float(p.temp), C.float(p.topP), C.uint32_t(p.seed), &gfail)
	if smpl == nil {
		return genResult{}, plugins.Errorf(plugins.ErrBadInput, "jsonSchema: llama.cpp rejected the grammar: %s", llamaLog.errorsSince(mark))
	}
	defer C.llama_sampler_free(smpl)

	if len(p.prompt) == 0 {
		return genResult{}, plugins.Errorf(plugins.ErrBadInput, "empty prompt")
	}
	prompt := C.malloc(C.size_t(len(p.prompt)) * 4)
	defer C.free(prompt)
	copy(unsafe.Slice((*int32)(prompt), len(p.prompt)), p.prompt)
	for done := 0; done < len(p.prompt); {
		k := min(promptChunk, len(p.prompt)-done)
		toks := (*C.llama_token)(unsafe.Add(prompt, 4*done))
		if rc := C.stoker_decode(lctx, toks, C.int(k), C.int(k)); rc != 0 {
			return genResult{}, decodeError(ctx, rc, "prompt")
		}
		done += k
		if p.onPrompt != nil {
			if err := p.onPrompt(done, len(p.prompt)); err != nil {
				return genResult{}, err
			}
		}
	}

	var buf [256]C.char
	res := genResult{finish: "length"}
	for res.tokens < p.maxTokens {
		if err := ctx.Err(); err != nil {
			return res, errCancelled(err)
		}
		var plen, eog C.int
		tok := C.stoker_next(smpl, lctx, m.vocab, &buf[0], 256, &plen, &eog)
		if eog != 0 {
			res.finish = "stop"
			return res, nil
		}
		res.tokens++
		var piece []byte
		if plen < 0 {
			piece = m.piece(int32(tok), false)
		} else {
			piece = C.GoBytes(unsafe.Pointer(&buf[0]), plen)
		}
		if err := onToken(int32(tok), piece); err != nil {
			if err == errStop {
				res.finish = "stop"
				return res, nil
			}
			return res, err
		}
		if res.tokens == p.maxTokens {
			break
		}
		if rc := C.stoker_decode_one(lctx, tok); rc != 0 {
			return res, decodeError(ctx, rc, "token")
		}
	}
	return res, nil
}

// decodeError types a llama_decode failure: 2 is an abort (our callback,
// so the job was cancelled), 1 means no KV-cache slot, negative is an error.
func decodeError(ctx context.Context, rc C.int, what string) error {
	if err := ctx.Err(); err != nil || rc == 2 {
		if err == nil {
			err = context.Canceled
		}
		return errCancelled(err)
	}
	if rc == 1 {
		return plugins.Errorf(plugins.ErrOutOfMemory, "llama_decode %s: no KV-cache slot", what)
	}
	return plugins.Errorf(plugins.ErrEngine, "llama_decode %s failed (%d): %s", what, int(rc), llamaLog.errorsSince(0))
}

// llamaLog receives llama.cpp's log. It is process-wide because llama.cpp's
// log callback is; the engine points it at its logger.
var llamaLog = &logSink{}

// logSink routes llama.cpp log lines to an hclog logger and remembers recent
// warnings and errors for failure messages.
type logSink struct {
	// quiet counts cancelled generations in flight; while it is positive,
	// warnings and errors are logged at debug level.
	quiet atomic.Int32

	mu      sync.Mutex
	log     hclog.Logger
	seq     uint64
	recent  []logLine // last warnings/errors
	lastLvl int
	// offload is the last "offloaded N/M layers to GPU" llama.cpp logged,
	// and offloadSeq its sequence number.
	offload    [2]int
	offloadSeq uint64
}

// offloadSince returns how many of how many layers llama.cpp said it put on
// the GPU after mark (0, 0 when it said nothing).
func (s *logSink) offloadSince(mark uint64) (n, of int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.offloadSeq <= mark {
		return 0, 0
	}
	return s.offload[0], s.offload[1]
}

type logLine struct {
	seq  uint64
	text string
}

func (s *logSink) setLogger(l hclog.Logger) {
	s.mu.Lock()
	s.log = l
	s.mu.Unlock()
}

func (s *logSink) mark() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seq
}

// errorsSince joins the warnings and errors logged after mark.
func (s *logSink) errorsSince(mark uint64) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var parts []string
	for _, l := range s.recent {
		if l.seq > mark {
			parts = append(parts, l.text)
		}
	}
	return strings.Join(parts, "; ")
}

func (s *logSink) line(level int, text string) {
	text = strings.TrimSpace(text)
	s.mu.Lock()
	defer s.mu.Unlock()
	if level == int(C.GGML_LOG_LEVEL_CONT) {
		level = s.lastLvl
	} else {
		s.lastLvl = level
	}
	if text == "" {
		return
	}
	s.seq++
	if _, rest, ok := strings.Cut(text, "offloaded "); ok {
		var n, of int
		if _, err := fmt.Sscanf(rest, "%d/%d layers to GPU", &n, &of); err == nil {
			s.offload, s.offloadSeq = [2]int{n, of}, s.seq
		}
	}
	if level >= int(C.GGML_LOG_LEVEL_WARN) {
		s.recent = append(s.recent, logLine{s.seq, text})
		if len(s.recent) > 16 {
			s.recent = s.recent[len(s.recent)-16:]
		}
	}
	if s.log == nil {
		return
	}
	if s.quiet.Load() > 0 && level >= int(C.GGML_LOG_LEVEL_WARN) {
		s.log.Debug(text, "during", "cancellation")
		return
	}
	switch level {
	case int(C.GGML_LOG_LEVEL_ERROR):
		s.log.Error(text)
	case int(C.GGML_LOG_LEVEL_WARN):
		s.log.Warn(text)
	case int(C.GGML_LOG_LEVEL_INFO):
		s.log.Debug(text)
	default:
		s.log.Trace(text)
	}
}

// String describes the model for logs.
func (m *llamaModel) String() string { return fmt.Sprintf("llama model %s", m.path) }

// checkGrammar reports whether llama.cpp's grammar parser accepts grammar
// (start rule "root") for this model's vocabulary.
func (m *llamaModel) checkGrammar(grammar string) error {
	cg := C.CString(grammar)
	defer C.free(unsafe.Pointer(cg))
	croot := C.CString("root")
	defer C.free(unsafe.Pointer(croot))
	mark := llamaLog.mark()
	s := C.llama_sampler_init_grammar(m.vocab, cg, croot)
	if s == nil {
		return fmt.Errorf("llama.cpp rejected the grammar: %s", llamaLog.errorsSince(mark))
	}
	C.llama_sampler_free(s)
	return nil
}
