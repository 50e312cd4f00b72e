package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/whisper-plugin/wav"
)

// EngineID is the ModelSource engine id this plugin serves. Spec §6.3 has no
// id that routes to whisper (open point 11); "whisper-cpp" is this project's
// extension, named like "llama-cpp".
const EngineID = "whisper-cpp"

// Version is the plugin version reported by Describe.
const Version = "0.1.0"

// Roles of the model files a job may carry (spec §6.3 ModelFile.role).
const (
	roleModel = "model"
	// roleVADModel is this plugin's extension: a Silero VAD model in
	// whisper.cpp's ggml format. With it, vad=true uses whisper.cpp's own
	// VAD; without it, the plugin's energy gate (vad.go).
	roleVADModel = "vad-model"
)

// options configure an engine; the zero value is usable.
type options struct {
	// Threads is the number of CPU threads whisper.cpp uses (0: the
	// whisper-cli default, min(4, NumCPU)).
	Threads int
	// MaxResident is how many models stay loaded at once; the least
	// recently used idle one is freed to make room (0: 2).
	MaxResident int
}

// engine serves audio_stt jobs on whisper.cpp. Models stay resident across
// jobs, keyed by the studio model id. It is safe for concurrent use; jobs on
// one model run one at a time (whisper.cpp's context holds one decoding
// state), jobs on different models run in parallel.
type engine struct {
	log     hclog.Logger
	threads int
	maxRes  int

	loadMu sync.Mutex // serialises model loads, so a model is loaded once

	mu     sync.Mutex // guards models and the refs/gone fields of each
	models map[string]*resident

	loads atomic.Int64 // models loaded since start (tests assert residency)
}

// resident is a loaded model.
type resident struct {
	id    string
	path  string
	m     *model
	bytes uint64

	jobMu    sync.Mutex   // held while a job runs on m
	lastUsed atomic.Int64 // unix ms

	refs int  // jobs holding the model; guarded by engine.mu
	gone bool // unloaded: free when refs drops to 0; guarded by engine.mu
}

func newEngine(log hclog.Logger, o options) *engine {
	if o.Threads <= 0 {
		o.Threads = min(4, runtime.NumCPU())
	}
	if o.MaxResident <= 0 {
		o.MaxResident = 2
	}
	return &engine{log: log, threads: o.Threads, maxRes: o.MaxResident, models: map[string]*resident{}}
}

// Describe reports the engine and whether whisper.cpp is built in. It loads
// nothing.
func (e *engine) Describe(ctx context.Context) (*plugins.Description, error) {
	ready, reason := engineStatus()
	return &plugins.Description{
		Name:            "whisper",
		Version:         Version,
		ContractVersion: plugins.ContractVersion,
		Engines:         []string{EngineID},
		Kinds:           []plugins.TaskKind{plugins.KindSTT},
		Models:          map[plugins.TaskKind][]string{plugins.KindSTT: {EngineID + ":*"}},
		Device:          deviceInfo(),
		Ready:           ready,
		NotReadyReason:  reason,
	}, nil
}

// Resident lists the loaded models.
func (e *engine) Resident(ctx context.Context) ([]plugins.ResidentModel, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]plugins.ResidentModel, 0, len(e.models))
	for _, r := range e.models {
		out = append(out, plugins.ResidentModel{Model: r.id, Bytes: r.bytes, LastUsedUnixMs: r.lastUsed.Load()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Model < out[j].Model })
	return out, nil
}

// Unload frees model. A job running on it finishes first: the memory is
// freed when it ends. Unloading a model that is not resident does nothing.
func (e *engine) Unload(ctx context.Context, model string) error {
	e.mu.Lock()
	r := e.models[model]
	if r != nil {
		delete(e.models, model)
	}
	free := r != nil && e.dropLocked(r)
	e.mu.Unlock()
	if free {
		r.m.close()
	}
	return nil
}

// Close frees every model. The engine must not be used afterwards.
func (e *engine) Close() {
	e.mu.Lock()
	var free []*resident
	for id, r := range e.models {
		delete(e.models, id)
		if e.dropLocked(r) {
			free = append(free, r)
		}
	}
	e.mu.Unlock()
	for _, r := range free {
		r.m.close()
	}
}

// dropLocked marks r unloaded and reports whether it is idle, in which case
// the caller frees it.
func (e *engine) dropLocked(r *resident) bool {
	r.gone = true
	return r.refs == 0
}

// release ends a job's hold on r and frees it if it was unloaded meanwhile.
func (e *engine) release(r *resident) {
	e.mu.Lock()
	r.refs--
	free := r.gone && r.refs == 0
	e.mu.Unlock()
	if free {
		r.m.close()
	}
}

// acquire returns the resident model id at path, loading it if needed, with
// a hold the caller gives back with release.
func (e *engine) acquire(id, path string, ev plugins.Events) (*resident, error) {
	if r := e.lookup(id, path); r != nil {
		return r, nil
	}
	e.loadMu.Lock()
	defer e.loadMu.Unlock()
	if r := e.lookup(id, path); r != nil { // loaded while we waited
		return r, nil
	}
	_ = ev.Log("info", fmt.Sprintf("loading whisper model %s", id))
	start := time.Now()
	m, err := loadModel(path, e.threads)
	if err != nil {
		return nil, err
	}
	e.loads.Add(1)
	var size uint64
	if st, err := os.Stat(path); err == nil {
		size = uint64(st.Size())
	}
	r := &resident{id: id, path: path, m: m, bytes: size, refs: 1}
	r.lastUsed.Store(time.Now().UnixMilli())
	e.log.Info("model loaded", "model", id, "path", path, "elapsed", time.Since(start))
	_ = ev.Log("info", fmt.Sprintf("loaded whisper model %s in %s", id, time.Since(start).Round(time.Millisecond)))

	e.mu.Lock()
	if old := e.models[id]; old != nil { // same id, new file: replace
		delete(e.models, id)
		if e.dropLocked(old) {
			defer old.m.close()
		}
	}
	e.models[id] = r
	evicted := e.evictLocked()
	e.mu.Unlock()
	for _, v := range evicted {
		e.log.Info("model evicted", "model", v.id)
		v.m.close()
	}
	return r, nil
}

// lookup returns the resident model id if it was loaded from path, with a
// hold; nil otherwise.
func (e *engine) lookup(id, path string) *resident {
	e.mu.Lock()
	defer e.mu.Unlock()
	r := e.models[id]
	if r == nil || r.path != path {
		return nil
	}
	r.refs++
	return r
}

// evictLocked unloads least recently used idle models beyond maxRes and
// returns those the caller must free.
func (e *engine) evictLocked() []*resident {
	var idle []*resident
	for _, r := range e.models {
		if r.refs == 0 {
			idle = append(idle, r)
		}
	}
	sort.Slice(idle, func(i, j int) bool { return idle[i].lastUsed.Load() < idle[j].lastUsed.Load() })
	var free []*resident
	for len(e.models) > e.maxRes && len(idle) > 0 {
		r := idle[0]
		idle = idle[1:]
		delete(e.models, r.id)
		if e.dropLocked(r) {
			free = append(free, r)
		}
	}
	return free
}

// sttResult is the audio_stt result of spec §7.2, plus SegmentList.
type sttResult struct {
	Text     string  `json:"text"`
	Language string  `json:"language"`
	Duration float64 `json:"duration"` // seconds of input audio
	Segments int     `json:"segments"` // a count, as the studio expects
	// SegmentList is this plugin's extension, present when the task asks
	// for timestamps: the segments with their times in seconds. With
	// timestamps "word" each entry is one word.
	SegmentList []segmentJSON `json:"segmentList,omitzero"`
}

type segmentJSON struct {
	Start float64 `json:"start"`
	End   float64 `json:"end"`
	Text  string  `json:"text"`
}

// Run transcribes the job's audio. See the package documentation for how
// each AudioSttParams field is honoured.
func (e *engine) Run(ctx context.Context, req *plugins.RunRequest, ev plugins.Events) error {
	if req.Task.Kind != plugins.KindSTT || req.Task.STT == nil {
		return plugins.Errorf(plugins.ErrUnsupported, "whisper: cannot serve %s", req.Task.Kind)
	}
	t := req.Task.STT
	p := transcribeParams{Threads: e.threads, Translate: t.Translate, Prompt: t.Prompt}
	switch t.Timestamps {
	case "", "segment":
	case "word":
		p.WordTimestamps = true
	default:
		return plugins.Errorf(plugins.ErrBadInput, "whisper: timestamps %q (want \"segment\" or \"word\")", t.Timestamps)
	}
	modelPath := req.File(roleModel)
	if modelPath == "" {
		return plugins.Errorf(plugins.ErrBadInput, "whisper: the job has no model file (role %q)", roleModel)
	}
	if t.VAD {
		p.VADModel = req.File(roleVADModel)
	}
	if req.Inputs.Audio == "" {
		return plugins.Errorf(plugins.ErrBadInput, "whisper: the job has no input audio")
	}

	audio, err := wav.ReadFile(req.Inputs.Audio)
	if err != nil {
		if errors.Is(err, wav.ErrFormat) {
			return plugins.Errorf(plugins.ErrBadInput, "whisper: input audio: %w", err)
		}
		return plugins.Errorf(plugins.ErrEngine, "whisper: input audio: %w", err)
	}
	pcm, err := audio.ToMono16k()
	if err != nil {
		return plugins.Errorf(plugins.ErrBadInput, "whisper: resampling: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return plugins.Errorf(plugins.ErrCancelled, "whisper: %w", err)
	}
	if ready, reason := engineStatus(); !ready {
		return plugins.Errorf(plugins.ErrEngine, "whisper: %s", reason)
	}
	lang := strings.ToLower(strings.TrimSpace(t.Language))
	switch lang {
	case "":
		lang = "en" // spec §7.2: the requested language or "en"
	case "auto":
	default:
		code, ok := languageCode(lang)
		if !ok {
			return plugins.Errorf(plugins.ErrBadInput, "whisper: unknown language %q", t.Language)
		}
		lang = code
	}
	p.Language = lang

	r, err := e.acquire(req.Model, modelPath, ev)
	if err != nil {
		return plugins.Errorf(plugins.ErrEngine, "whisper: loading model %s: %w", req.Model, err)
	}
	defer e.release(r)
	if lang != "en" && lang != "auto" && !r.m.multilingual() {
		return plugins.Errorf(plugins.ErrBadInput, "whisper: model %s is English-only and cannot transcribe %q", req.Model, lang)
	}

	var gate *timeMap
	if t.VAD && p.VADModel == "" {
		gate = energyGate(pcm, sampleRate)
		pcm = gate.apply(pcm)
	}

	r.jobMu.Lock()
	defer r.jobMu.Unlock()
	r.lastUsed.Store(time.Now().UnixMilli())
	start := time.Now()
	var tr *transcript
	if len(pcm) == 0 { // the gate found no speech: nothing to decode
		tr = &transcript{Language: "en"}
	} else {
		tr, err = r.m.transcribe(ctx, pcm, p, func(pct int) error {
			return ev.Progress(uint64(pct), 100, "percent")
		})
		if err != nil {
			if errors.Is(err, errAborted) {
				return plugins.Errorf(plugins.ErrCancelled, "whisper: %w", err)
			}
			return plugins.Errorf(plugins.ErrEngine, "whisper: %w", err)
		}
	}
	r.lastUsed.Store(time.Now().UnixMilli())
	elapsed := time.Since(start)
	e.log.Debug("transcribed", "model", req.Model, "audio_s", audio.Duration(), "elapsed", elapsed, "segments", len(tr.Segments))
	_ = ev.Log("info", fmt.Sprintf("transcribed %.2f s of audio in %s", audio.Duration(), elapsed.Round(time.Millisecond)))

	if gate != nil {
		for i := range tr.Segments {
			tr.Segments[i].T0 = gate.toOriginal(tr.Segments[i].T0, false)
			tr.Segments[i].T1 = gate.toOriginal(tr.Segments[i].T1, true)
		}
	}
	res := buildResult(tr, lang, audio.Duration(), t.Timestamps != "")
	b, err := json.Marshal(res)
	if err != nil {
		return plugins.Errorf(plugins.ErrEngine, "whisper: encoding result: %w", err)
	}
	return ev.Result(b)
}

// buildResult shapes a transcript as spec §7.2's STT result.
func buildResult(tr *transcript, lang string, duration float64, withTimes bool) *sttResult {
	var text strings.Builder
	res := &sttResult{Language: lang, Duration: math.Round(duration*1000) / 1000, Segments: len(tr.Segments)}
	if lang == "auto" {
		res.Language = tr.Language
	}
	for _, s := range tr.Segments {
		text.WriteString(s.Text)
		if withTimes {
			res.SegmentList = append(res.SegmentList, segmentJSON{
				Start: float64(s.T0) / 100, End: float64(s.T1) / 100, Text: strings.TrimSpace(s.Text),
			})
		}
	}
	res.Text = strings.TrimSpace(text.String())
	if withTimes && res.SegmentList == nil {
		res.SegmentList = []segmentJSON{}
	}
	return res
}

// sampleRate is the rate whisper.cpp takes (WHISPER_SAMPLE_RATE).
const sampleRate = 16000

// transcribeParams are the whisper_full parameters a job controls. The rest
// are whisper-cli's defaults (see binding_whisper.go), so that the plugin's
// transcripts equal whisper-cli's for the same input.
type transcribeParams struct {
	Language       string // a language code or "auto"
	Translate      bool
	Prompt         string
	WordTimestamps bool // one segment per word, timed by token timestamps
	Threads        int
	VADModel       string // whisper.cpp VAD model; "" for none
}

// errAborted is wrapped by transcribe's error when the job was cancelled or
// its progress could not be reported (the receiver is gone).
var errAborted = errors.New("transcription aborted")

// transcript is whisper's output.
type transcript struct {
	Language string // detected or requested
	Segments []segment
}

// segment is one transcript segment; times in centiseconds as whisper.cpp
// reports them.
type segment struct {
	T0, T1 int64
	Text   string
}
