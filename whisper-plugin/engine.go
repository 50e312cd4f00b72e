package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/plugins/residency"
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
// jobs in a residency set, one copy per studio model id. It is safe for
// concurrent use; jobs on one model run one at a time (whisper.cpp's context
// holds one decoding state), jobs on different models run in parallel.
type engine struct {
	log     hclog.Logger
	threads int

	models *residency.Set[*resident] // at most options.MaxResident
}

// resident is a loaded model.
type resident struct {
	m     *model
	jobMu sync.Mutex // held while a job runs on m
}

func newEngine(log hclog.Logger, o options) *engine {
	if o.Threads <= 0 {
		o.Threads = min(4, runtime.NumCPU())
	}
	if o.MaxResident <= 0 {
		o.MaxResident = 2
	}
	return &engine{
		log:     log,
		threads: o.Threads,
		models: residency.New(func(r *resident) { r.m.close() }, residency.Options{
			MaxModels:       o.MaxResident,
			OneCopyPerModel: true,
			Logger:          log,
		}),
	}
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

// Resident lists the loaded models, most recently used first.
func (e *engine) Resident(ctx context.Context) ([]plugins.ResidentModel, error) {
	return e.models.Resident(), nil
}

// Unload frees model. A job running on it finishes first: the memory is
// freed when it ends. Unloading a model that is not resident does nothing.
func (e *engine) Unload(ctx context.Context, model string) error {
	e.models.Unload(model)
	return nil
}

// Close frees every model. The engine must not be used afterwards: its jobs
// fail.
func (e *engine) Close() { e.models.Close() }

// acquire returns the resident model id at path, loading it if needed, with
// a hold the caller gives back with Release. A job on a model being loaded
// waits for that load. A new file for a resident id (a re-published model)
// replaces the resident copy.
func (e *engine) acquire(ctx context.Context, id, path string, ev plugins.Events) (*residency.Handle[*resident], error) {
	return e.models.Acquire(ctx, residency.Key{Model: id, Identity: path}, func(context.Context) (*resident, uint64, error) {
		_ = ev.Log("info", fmt.Sprintf("loading whisper model %s", id))
		start := time.Now()
		m, err := loadModel(path, e.threads)
		if err != nil {
			return nil, 0, err
		}
		var size uint64
		if st, err := os.Stat(path); err == nil {
			size = uint64(st.Size())
		}
		e.log.Info("model loaded", "model", id, "path", path, "elapsed", time.Since(start))
		_ = ev.Log("info", fmt.Sprintf("loaded whisper model %s in %s", id, time.Since(start).Round(time.Millisecond)))
		return &resident{m: m}, size, nil
	})
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

	h, err := e.acquire(ctx, req.Model, modelPath, ev)
	if err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			// Cancelled while another job loaded the model.
			return plugins.Errorf(plugins.ErrCancelled, "whisper: %w", err)
		}
		return plugins.Errorf(plugins.ErrEngine, "whisper: loading model %s: %w", req.Model, err)
	}
	defer h.Release()
	r := h.Value()
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
