package synthetic

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/hashicorp/go-hclog"

	"github.com/stokerhq/stoker/plugins"
)

// EngineID is the ModelSource engine id this plugin serves (spec §6.4).
const EngineID = "synthetic"

// Version is the plugin version Describe reports.
const Version = "0.1.0"

// Engine is the synthetic engine. It holds no models and no state between
// jobs, so its methods may be called concurrently and any number of Runs
// may be in flight at once. Create it with [New].
type Engine struct {
	log hclog.Logger
}

// New returns a synthetic engine that logs to log (nil: nowhere).
func New(log hclog.Logger) *Engine {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Engine{log: log}
}

var _ plugins.Engine = (*Engine)(nil)

// modelFor is the kind-specific synthetic model name of spec §8.1.
func modelFor(k plugins.TaskKind) string {
	switch k {
	case plugins.KindImage:
		return "synthetic-image"
	case plugins.KindLLM:
		return "synthetic-llm"
	case plugins.KindSTT:
		return "synthetic-stt"
	case plugins.KindTTS:
		return "synthetic-tts"
	case plugins.KindVideo:
		return "synthetic-video"
	}
	return ""
}

// Describe reports the synthetic engine: every task kind, only the
// synthetic model names, a CPU device, always ready. It does no work.
func (e *Engine) Describe(ctx context.Context) (*plugins.Description, error) {
	models := make(map[plugins.TaskKind][]string, len(plugins.AllKinds))
	for _, k := range plugins.AllKinds {
		models[k] = []string{"synthetic", modelFor(k)}
	}
	return &plugins.Description{
		Name:            "synthetic",
		Version:         Version,
		ContractVersion: plugins.ContractVersion,
		Engines:         []string{EngineID},
		Kinds:           append([]plugins.TaskKind(nil), plugins.AllKinds...),
		Models:          models,
		Device:          plugins.Device{Backend: "cpu", Name: "cpu"},
		Ready:           true,
	}, nil
}

// Run produces the task's synthetic output; see the package documentation
// for what each kind yields and its limits. It blocks until the output has
// been handed to ev. It returns nil on success; a *plugins.JobError of kind
// ErrUnsupported for another engine id or an unknown task kind, ErrBadInput
// for a task it refuses (sizes out of range, no messages...), ErrCancelled
// once ctx is done, and ErrEngine when ev fails or an input file cannot be
// read.
func (e *Engine) Run(ctx context.Context, req *plugins.RunRequest, ev plugins.Events) error {
	if req.Engine != EngineID {
		// Spec §6.4: never substitute synthetic output for a real model.
		return plugins.Errorf(plugins.ErrUnsupported, "synthetic: cannot serve engine %q", req.Engine)
	}
	j := &job{ctx: ctx, ev: ev}
	if err := j.check(); err != nil {
		return j.outcome(err)
	}
	e.log.Debug("run", "job", req.JobID, "kind", req.Task.Kind, "model", req.Model)

	t := &req.Task
	var err error
	switch {
	case t.Kind == plugins.KindImage && t.Image != nil:
		err = runImage(j, t.Image)
	case t.Kind == plugins.KindVideo && t.Video != nil:
		err = runVideo(j, t.Video)
	case t.Kind == plugins.KindTTS && t.TTS != nil:
		err = runTTS(j, t.TTS)
	case t.Kind == plugins.KindSTT && t.STT != nil:
		err = runSTT(j, t.STT, req.Inputs.Audio)
	case t.Kind == plugins.KindLLM && t.LLM != nil:
		err = runLLM(j, req, t.LLM)
	case modelFor(t.Kind) == "":
		err = plugins.Errorf(plugins.ErrUnsupported, "synthetic: cannot serve task kind %q", t.Kind)
	default:
		err = plugins.Errorf(plugins.ErrBadInput, "synthetic: %s task without its parameters", t.Kind)
	}
	if err != nil {
		e.log.Debug("run failed", "job", req.JobID, "error", err)
	}
	return j.outcome(err)
}

// badInput returns a bad-input job error; the task fails the same way on
// every worker.
func badInput(format string, args ...any) error {
	return plugins.Errorf(plugins.ErrBadInput, "synthetic: "+format, args...)
}

// job is one Run in flight: its context, its event receiver and the first
// reason it has to stop. It is used by one goroutine only.
type job struct {
	ctx context.Context
	ev  plugins.Events
	err error // sticky: cancellation or a failed Events call
}

// check returns the reason the job must stop, or nil to go on.
func (j *job) check() error {
	if j.err == nil {
		j.err = j.ctx.Err()
	}
	return j.err
}

// progress reports step of total units, unless the job must stop.
func (j *job) progress(step, total uint64, unit string) error {
	if err := j.check(); err != nil {
		return err
	}
	if err := j.ev.Progress(step, total, unit); err != nil {
		j.err = fmt.Errorf("sending progress: %w", err)
	}
	return j.err
}

// logf ships an info line to the job's log, unless the job must stop.
func (j *job) logf(format string, args ...any) error {
	if err := j.check(); err != nil {
		return err
	}
	if err := j.ev.Log("info", fmt.Sprintf(format, args...)); err != nil {
		j.err = fmt.Errorf("sending log: %w", err)
	}
	return j.err
}

// result sends the job's JSON result, unless the job must stop.
func (j *job) result(b []byte) error {
	if err := j.check(); err != nil {
		return err
	}
	if err := j.ev.Result(b); err != nil {
		j.err = fmt.Errorf("sending result: %w", err)
	}
	return j.err
}

// outcome turns what a kind's runner returned into Run's result: nil, the
// runner's own typed error, a cancellation, or an engine error.
func (j *job) outcome(err error) error {
	if err == nil {
		return nil
	}
	if cerr := j.ctx.Err(); cerr != nil {
		return plugins.Errorf(plugins.ErrCancelled, "synthetic: job cancelled: %w", cerr)
	}
	var je *plugins.JobError
	if errors.As(err, &je) {
		return je
	}
	return plugins.Errorf(plugins.ErrEngine, "synthetic: %w", err)
}

// key hashes the parts that make one task's output. Each part is length
// prefixed, so ("ab", "c") and ("a", "bc") differ.
func key(parts ...string) [32]byte {
	h := sha256.New()
	var n [8]byte
	for _, p := range parts {
		binary.LittleEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write([]byte(p))
	}
	var k [32]byte
	h.Sum(k[:0])
	return k
}
