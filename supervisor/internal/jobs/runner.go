// Package jobs is the job runner: the one place that knows both the studio
// session and the engine host. The session hands it accepted offers; it
// fetches the model files and inputs, runs the job on the engine host,
// streams a binary result on to the upload (keeping a copy on disk for the
// retries) or sends a JSON result, and reports every failure with a type.
package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/supervisor/internal/engines"
	"github.com/stokerhq/stoker/supervisor/internal/models"
	"github.com/stokerhq/stoker/supervisor/internal/protocol"
	"github.com/stokerhq/stoker/supervisor/internal/studio"
)

// Engines is what the runner needs of the engine host.
type Engines interface {
	Check(jobID, engine string, kind plugins.TaskKind) error
	Run(ctx context.Context, req *plugins.RunRequest, ev plugins.Events) error
}

// Models is what the runner needs of the model store.
type Models interface {
	Acquire(ctx context.Context, model string, files []models.File) ([]models.Local, *models.Lease, error)
	FetchInput(ctx context.Context, rawURL string, kind models.InputKind, dir string) (string, error)
}

var (
	_ Engines          = (*engines.Host)(nil)
	_ Models           = (*models.Store)(nil)
	_ studio.JobRunner = (*Runner)(nil)
)

// Config configures a Runner.
type Config struct {
	Engines Engines
	Models  Models
	// WorkDir holds one scratch directory per running job (inputs, the
	// spooled binary output); it is removed when the job is reported.
	WorkDir string
	Logger  hclog.Logger
	// ReportTimeout bounds the sending of a job's outcome once the job
	// itself is over, including after shutdown began. (default 30s)
	ReportTimeout time.Duration
	// MaxOutputBytes bounds a binary result; one over it fails the job as
	// bad input. (default DefaultMaxOutputBytes, 2 GiB)
	MaxOutputBytes int64
	// MinFreeBytes is the disk space spooling leaves free under WorkDir; a
	// result that would eat into it fails the job as node_limit. (default
	// DefaultMinFreeBytes, 1 GiB)
	MinFreeBytes uint64
}

// TextReporter is a studio.Reporter that also takes the text of an llm
// job's answer as the engine generates it (the local API's, for a client
// that streams the answer; the studio's does not). The runner then asks
// the engine for the text (plugins.RunRequest.StreamText) and passes each
// piece to Text, in order, before the outcome; an error from Text (the
// client left) ends the job with that error (a *plugins.JobError keeps
// its kind).
type TextReporter interface {
	studio.Reporter
	Text(piece string) error
}

// FailureReporter is a studio.Reporter that takes a failure with its
// type (the local API's: it answers each kind of failure with its own
// HTTP status). The runner calls FailJob instead of Fail on it.
type FailureReporter interface {
	studio.Reporter
	FailJob(ctx context.Context, je *plugins.JobError, message string) error
}

// Runner runs accepted jobs. It implements studio.JobRunner.
type Runner struct {
	cfg Config
	log hclog.Logger

	mu  sync.Mutex // guards cur
	cur *Current
}

// Current describes the job in flight, for the status page.
type Current struct {
	JobID    string
	Model    string
	Engine   string
	Kind     plugins.TaskKind
	Started  time.Time
	Step     uint64
	Total    uint64
	Unit     string
	Phase    string // "fetching", "running", "delivering"
	Progress time.Time
}

// New returns a Runner.
func New(cfg Config) (*Runner, error) {
	if cfg.Engines == nil || cfg.Models == nil || cfg.WorkDir == "" {
		return nil, errors.New("jobs: Engines, Models and WorkDir are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.ReportTimeout == 0 {
		cfg.ReportTimeout = 30 * time.Second
	}
	if cfg.MaxOutputBytes == 0 {
		cfg.MaxOutputBytes = DefaultMaxOutputBytes
	}
	if cfg.MinFreeBytes == 0 {
		cfg.MinFreeBytes = DefaultMinFreeBytes
	}
	if err := os.MkdirAll(cfg.WorkDir, 0o700); err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	r := &Runner{cfg: cfg, log: cfg.Logger.Named("jobs")}
	r.removeLeftovers()
	return r, nil
}

// Current returns the job in flight, if any.
func (r *Runner) Current() (Current, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur == nil {
		return Current{}, false
	}
	return *r.cur, true
}

func (r *Runner) update(f func(c *Current)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur != nil {
		f(r.cur)
	}
}

// Admit refuses the offers the engine host refuses (engines.Host.Check): a
// job that brought down two plugin instances here; an engine whose plugin
// is quarantined, or waiting out a restart backoff after dying again and
// again (only briefly unavailable); and one whose plugin says it cannot
// serve, or is stopped. It takes a plugin that is starting or restarting at
// once (the run waits for it), and a job for an engine no plugin serves,
// which then fails loudly (spec §6.4). It does not block.
//
// Only the briefly unavailable engine's refusal carries a reject code:
// busy, one of the two codes (with paused) that make the studio requeue a
// job without counting an attempt (spec §4.1.4, §9.3); this node may serve
// it a minute later. Any other refusal has no code, so the studio offers
// the job elsewhere and counts the attempt.
func (r *Runner) Admit(claim *protocol.JobOfferClaim) error {
	err := r.cfg.Engines.Check(claim.JobID, claim.ModelSource.Engine, plugins.TaskKind(claim.Task.Kind))
	if errors.Is(err, engines.ErrUnavailable) {
		return &Refusal{Code: protocol.RejectBusy, Err: err}
	}
	return err
}

// Refusal is an Admit error that carries a reject code.
type Refusal struct {
	Code protocol.RejectCode
	Err  error
}

func (e *Refusal) Error() string                   { return e.Err.Error() }
func (e *Refusal) Unwrap() error                   { return e.Err }
func (e *Refusal) RejectCode() protocol.RejectCode { return e.Code }

// RunJob runs one accepted job, reports its outcome through rep and
// returns it, once the outcome was sent (or could not be). It logs the
// job's start and its end, once; rep may be any Reporter (the studio
// session's, or one that answers a local request).
func (r *Runner) RunJob(ctx context.Context, claim *protocol.JobOfferClaim, rep studio.Reporter) studio.Outcome {
	log := jobLog{r.log, claim.JobID}
	kind := plugins.TaskKind(claim.Task.Kind)
	r.mu.Lock()
	r.cur = &Current{JobID: claim.JobID, Model: claim.Model, Engine: claim.ModelSource.Engine, Kind: kind, Started: time.Now(), Phase: "fetching"}
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.cur = nil
		r.mu.Unlock()
	}()
	log.Info("job started", "model", claim.Model, "engine", claim.ModelSource.Engine, "kind", kind,
		"game", claim.GameID, "asset", claim.AssetName, "vram_estimate_gb", claim.VramGbEstimate)
	start := time.Now()

	dir := &scratch{parent: r.cfg.WorkDir, prefix: scratchPrefix + safeName(claim.JobID) + "-"}
	defer dir.remove()

	out := r.run(ctx, log, claim, dir, rep)
	out.Elapsed = time.Since(start)
	elapsed := out.Elapsed.Milliseconds()
	switch {
	case out.Err == nil && out.Reported:
		log.Info("job completed", "elapsed_ms", elapsed)
	case out.Err == nil:
		log.Error("job completed but its result could not be sent; the studio will requeue the job",
			"elapsed_ms", elapsed, "error", out.ReportErr)
	default:
		je := plugins.AsJobError(out.Err)
		args := []any{"kind", je.Kind, "retryable", out.Retryable, "error", FailMessage(je), "elapsed_ms", elapsed}
		if !out.Reported {
			args = append(args, "fail_not_sent", out.ReportErr)
		}
		log.Error("job failed", args...)
	}
	return out
}

// jobLog logs one job's lines with its id first, where With would put it.
// With would build a logger, and an interceptor around it, for every job
// (about 7 µs a job in the round-trip benchmark's profile).
type jobLog struct {
	l  hclog.Logger
	id string
}

func (j jobLog) Log(level hclog.Level, msg string, args ...any) {
	j.l.Log(level, msg, append([]any{"job_id", j.id}, args...)...)
}

func (j jobLog) Info(msg string, args ...any)  { j.Log(hclog.Info, msg, args...) }
func (j jobLog) Error(msg string, args ...any) { j.Log(hclog.Error, msg, args...) }

// run fetches, runs and delivers the job, or reports its failure.
func (r *Runner) run(ctx context.Context, log jobLog, claim *protocol.JobOfferClaim, dir *scratch, rep studio.Reporter) studio.Outcome {
	req, lease, err := r.prepare(ctx, claim, dir)
	defer lease.Release()
	if err != nil {
		return r.fail(ctx, rep, err)
	}
	r.update(func(c *Current) { c.Phase = "running" })
	prompt := claim.Task.Prompt()
	var out studio.Outcome
	if claim.Task.Kind.Binary() {
		out = r.runBinary(ctx, log, req, dir, prompt, rep)
	} else {
		out = r.runJSON(ctx, log, req, prompt, rep)
	}
	if out.Err != nil {
		return r.fail(ctx, rep, out.Err)
	}
	return out
}

// prepare builds the engine request: model files from the store (leased
// against eviction until the job ends) and inputs fetched into dir.
func (r *Runner) prepare(ctx context.Context, claim *protocol.JobOfferClaim, dir *scratch) (*plugins.RunRequest, *models.Lease, error) {
	req := &plugins.RunRequest{
		JobID:    claim.JobID,
		Model:    claim.Model,
		Engine:   claim.ModelSource.Engine,
		Task:     taskFromClaim(*claim.Task),
		Defaults: defaultsFromClaim(claim.ModelSource.CliDefaults),
	}
	if err := checkRequest(req); err != nil {
		return nil, nil, err
	}
	local, lease, err := r.cfg.Models.Acquire(ctx, claim.Model, ModelFiles(claim.ModelSource))
	if err != nil {
		return nil, nil, fetchError(err)
	}
	for _, l := range local {
		req.Files = append(req.Files, plugins.ModelFile{Role: l.Role, Path: l.Path})
	}
	for _, in := range inputsOf(*claim.Task, &req.Inputs) {
		d, err := dir.path()
		if err != nil {
			return nil, lease, plugins.Errorf(plugins.ErrEngine, "job scratch dir: %w", err)
		}
		path, err := r.cfg.Models.FetchInput(ctx, in.url, in.kind, d)
		if err != nil {
			return nil, lease, fetchError(err)
		}
		*in.dst = path
	}
	return req, lease, nil
}

// fetchError types a model store failure: an input over this node's size
// limit is a node limit (a node with a larger one may take it); any other
// refused name, scheme or size is bad input (it fails the same way
// anywhere); the rest may succeed later.
func fetchError(err error) error {
	if errors.Is(err, models.ErrTooLarge) {
		return &plugins.JobError{Kind: plugins.ErrNodeLimit, Message: err.Error(), Err: err}
	}
	if errors.Is(err, models.ErrRefused) {
		return &plugins.JobError{Kind: plugins.ErrBadInput, Message: err.Error(), Err: err}
	}
	if errors.Is(err, context.Canceled) {
		return &plugins.JobError{Kind: plugins.ErrCancelled, Message: "cancelled while fetching: " + err.Error(), Err: err}
	}
	return &plugins.JobError{Kind: plugins.ErrFetch, Message: err.Error(), Err: err}
}

// runJSON runs a job whose result is JSON and sends completeJson. An
// Outcome with Err set is still to be reported as a failure.
func (r *Runner) runJSON(ctx context.Context, log jobLog, req *plugins.RunRequest, prompt string, rep studio.Reporter) studio.Outcome {
	ev := &jsonEvents{jobEvents: jobEvents{r: r, log: log}}
	if tr, ok := rep.(TextReporter); ok && req.Task.Kind == plugins.KindLLM {
		req.StreamText, ev.text = true, tr
	}
	if err := r.cfg.Engines.Run(ctx, req, ev); err != nil {
		return studio.Outcome{Err: err}
	}
	if ev.result == nil {
		return studio.Outcome{Err: plugins.Errorf(plugins.ErrEngine, "engine returned binary output for a %s job, which takes a JSON result", req.Task.Kind)}
	}
	r.update(func(c *Current) { c.Phase = "delivering" })
	rctx, cancel := r.reportCtx(ctx)
	defer cancel()
	if err := rep.CompleteJSON(rctx, ev.result, prompt); err != nil {
		if errors.Is(err, studio.ErrFrameTooLarge) {
			// Nothing was sent and the session is up. The frame limit
			// stands for the studio's: any node would send the same
			// frame and have it refused, so the job fails for good.
			return studio.Outcome{Err: &plugins.JobError{Kind: plugins.ErrBadInput, Err: err,
				Message: fmt.Sprintf("result too large to deliver: %v; it would fail on any node", err)}}
		}
		// The socket that accepted the job is gone: no fail can follow
		// (spec §7.2); the studio releases the claim on its side.
		return studio.Outcome{ReportErr: err}
	}
	return studio.Outcome{Reported: true}
}

// runBinary runs a job whose result is a file. The output streams to the
// upload as the engine produces it and, at the same time, to a spool file
// in the job's scratch dir, from which a retried upload reads.
func (r *Runner) runBinary(ctx context.Context, log jobLog, req *plugins.RunRequest, dir *scratch, prompt string, rep studio.Reporter) studio.Outcome {
	rctx, cancel := r.reportCtx(ctx)
	defer cancel()
	ev := &binaryEvents{
		jobEvents: jobEvents{r: r, log: log},
		dir:       dir,
		max:       r.cfg.MaxOutputBytes,
		minFree:   r.cfg.MinFreeBytes,
		engineOK:  make(chan struct{}),
		start: func(ext string, first io.ReadCloser, open func() (io.ReadCloser, error)) <-chan error {
			done := make(chan error, 1)
			attempt := 0
			go func() {
				done <- rep.Upload(rctx, ext, prompt, func() (io.ReadCloser, error) {
					attempt++
					if attempt == 1 {
						return first, nil
					}
					return open()
				})
			}()
			return done
		},
	}
	runErr := r.cfg.Engines.Run(ctx, req, ev)
	if runErr == nil && ev.spool == nil {
		runErr = plugins.Errorf(plugins.ErrEngine, "engine returned a JSON result for a %s job, which takes a file", req.Task.Kind)
	}
	uploadDone := ev.finish(runErr)
	if runErr != nil {
		if uploadDone != nil {
			<-uploadDone // the aborted body ends the upload; its error is moot
		}
		return studio.Outcome{Err: runErr}
	}
	r.update(func(c *Current) { c.Phase = "delivering" })
	if err := <-uploadDone; err != nil {
		return studio.Outcome{Err: &plugins.JobError{Kind: plugins.ErrUpload, Message: "upload result: " + err.Error(), Err: err}}
	}
	log.Info("binary result delivered", "ext", ev.ext, "bytes", ev.n)
	return studio.Outcome{Reported: true, ResultBytes: ev.n}
}

// reportCtx is the context outcomes are sent under: it outlives an agent
// shutdown by ReportTimeout so a finished job is still reported.
func (r *Runner) reportCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	base := context.WithoutCancel(ctx)
	rctx, cancel := context.WithCancel(base)
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(r.cfg.ReportTimeout, cancel)
		context.AfterFunc(rctx, func() { t.Stop() })
	})
	return rctx, func() { stop(); cancel() }
}

// fail reports err as the job's failure and returns the outcome; RunJob
// logs it.
func (r *Runner) fail(ctx context.Context, rep studio.Reporter, err error) studio.Outcome {
	je := plugins.AsJobError(err)
	rctx, cancel := r.reportCtx(ctx)
	defer cancel()
	out := studio.Outcome{Err: je, Retryable: je.Retryable()}
	msg := FailMessage(je)
	if fr, ok := rep.(FailureReporter); ok {
		out.ReportErr = fr.FailJob(rctx, je, msg)
	} else {
		out.ReportErr = rep.Fail(rctx, msg, je.Retryable())
	}
	out.Reported = out.ReportErr == nil
	return out
}

// maxFailMessage bounds the text of a fail frame.
const maxFailMessage = 4096

// FailMessage is the human-readable text of a fail frame: the failure's
// kind, its message and, for a crash, the plugin's last stderr lines.
func FailMessage(je *plugins.JobError) string {
	var b strings.Builder
	b.WriteString(string(je.Kind))
	b.WriteString(": ")
	b.WriteString(je.Message)
	if n := len(je.StderrTail); n > 0 {
		b.WriteString("; last stderr: ")
		b.WriteString(strings.Join(je.StderrTail[max(0, n-5):], " | "))
	}
	s := b.String()
	if len(s) > maxFailMessage {
		s = s[:maxFailMessage-3] + "..."
	}
	return s
}

// safeName is s for a file name: each character outside A-Z, a-z, 0-9,
// '.', '_' and '-' (each byte of invalid UTF-8) becomes '_', and the result
// is cut to 64 bytes.
func safeName(s string) string {
	b := make([]byte, 0, min(len(s), 64))
	for _, r := range s {
		if len(b) == 64 {
			break
		}
		switch {
		case 'A' <= r && r <= 'Z', 'a' <= r && r <= 'z', '0' <= r && r <= '9', r == '.', r == '_', r == '-':
			b = append(b, byte(r))
		default:
			b = append(b, '_')
		}
	}
	return string(b)
}

// jobEvents handles what every job reports besides its output: progress
// goes to the status of the job in flight, log lines to the agent's log
// (and so to the studio's log stream) under the job's id.
type jobEvents struct {
	r   *Runner
	log jobLog
}

func (e jobEvents) Progress(step, total uint64, unit string) error {
	e.r.update(func(c *Current) { c.Step, c.Total, c.Unit, c.Progress = step, total, unit, time.Now() })
	return nil
}

func (e jobEvents) Log(level, msg string) error {
	e.log.Log(hclog.LevelFromString(level), msg, "category", "engine")
	return nil
}

// jsonEvents collects a JSON job's result and passes streamed text on.
type jsonEvents struct {
	jobEvents
	result json.RawMessage
	text   TextReporter // nil unless the reporter takes the text
}

var _ plugins.TextStreamer = (*jsonEvents)(nil)

func (e *jsonEvents) Text(piece string) error {
	if e.text == nil {
		return nil
	}
	return e.text.Text(piece)
}

func (e *jsonEvents) Output(ext string, _ []byte) error {
	return plugins.Errorf(plugins.ErrEngine, "engine sent %s output for a job that takes a JSON result", ext)
}
func (e *jsonEvents) Result(js []byte) error {
	e.result = append(json.RawMessage(nil), js...)
	return nil
}

// binaryEvents tees a binary job's output to the live upload and to the
// spool file.
type binaryEvents struct {
	jobEvents
	dir   *scratch
	start func(ext string, first io.ReadCloser, open func() (io.ReadCloser, error)) <-chan error

	// max bounds the output; minFree is the disk space the spool leaves.
	max     int64
	minFree uint64

	ext        string
	spool      *os.File
	n          int64
	checkedAt  int64          // e.n when the free space was last checked
	pw         *io.PipeWriter // the first upload attempt's body; nil once it broke
	uploadDone <-chan error
	engineOK   chan struct{} // closed when the engine succeeded and the spool is complete
	engineErr  error
}

func (e *binaryEvents) Result([]byte) error {
	return plugins.Errorf(plugins.ErrEngine, "engine sent a JSON result for a job that takes a file")
}

func (e *binaryEvents) Output(ext string, p []byte) error {
	if e.spool == nil {
		dir, err := e.dir.path()
		if err != nil {
			return plugins.Errorf(plugins.ErrEngine, "job scratch dir: %w", err)
		}
		f, err := os.OpenFile(filepath.Join(dir, "result."+ext), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
		if err != nil {
			return plugins.Errorf(plugins.ErrEngine, "spool result: %w", err)
		}
		e.spool, e.ext = f, ext
		if err := e.checkFree(dir, int64(len(p))); err != nil {
			return err
		}
		pr, pw := io.Pipe()
		e.pw = pw
		e.uploadDone = e.start(ext, pr, e.openSpool)
	}
	if e.n+int64(len(p)) > e.max {
		// Every node has the same bound: another attempt would fail the
		// same way.
		return plugins.Errorf(plugins.ErrBadInput, "the binary result is over %d bytes, the limit on a result", e.max)
	}
	if e.n-e.checkedAt >= freeCheckEvery {
		if err := e.checkFree(filepath.Dir(e.spool.Name()), freeCheckEvery); err != nil {
			return err
		}
	}
	if _, err := e.spool.Write(p); err != nil {
		return plugins.Errorf(plugins.ErrEngine, "spool result: %w", err)
	}
	e.n += int64(len(p))
	if e.pw != nil {
		if _, err := e.pw.Write(p); err != nil {
			// The first attempt broke; a retry reads the spool.
			e.pw = nil
		}
	}
	return nil
}

// checkFree fails when spooling next more bytes under dir would leave less
// than minFree on its file system. An unreadable file system is not a
// failure: the output bound still holds.
func (e *binaryEvents) checkFree(dir string, next int64) error {
	e.checkedAt = e.n
	free, ok := diskFree(dir)
	if ok && free < e.minFree+uint64(next) {
		return errDiskFree(dir, free, e.minFree)
	}
	return nil
}

// openSpool opens the complete spool for a retried upload, once the engine
// has finished; it fails if the engine did.
func (e *binaryEvents) openSpool() (io.ReadCloser, error) {
	<-e.engineOK
	if e.engineErr != nil {
		return nil, e.engineErr
	}
	return os.Open(e.spool.Name())
}

// finish ends the output after the engine returned runErr, and returns the
// upload's outcome channel (nil when no output ever started).
func (e *binaryEvents) finish(runErr error) <-chan error {
	e.engineErr = runErr
	if e.spool != nil {
		if err := e.spool.Close(); err != nil && runErr == nil {
			e.engineErr = plugins.Errorf(plugins.ErrEngine, "spool result: %w", err)
		}
	}
	close(e.engineOK)
	if e.pw != nil {
		if e.engineErr != nil {
			e.pw.CloseWithError(e.engineErr)
		} else {
			e.pw.Close()
		}
	}
	return e.uploadDone
}

// scratchPrefix starts the name of every job's scratch directory.
const scratchPrefix = "job-"

// removeLeftovers removes the scratch directories a killed run left in
// WorkDir. A job's directory goes when the job is reported, so any found
// before the first job belongs to no job. One agent runs per state dir
// (its start-up reaper kills the plugins of any other). Names the runner
// does not make are left alone; failures are logged, since a leftover only
// costs disk.
func (r *Runner) removeLeftovers() {
	ents, err := os.ReadDir(r.cfg.WorkDir)
	if err != nil {
		r.log.Warn("cannot list the job scratch dir", "dir", r.cfg.WorkDir, "error", err)
		return
	}
	removed := 0
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), scratchPrefix) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(r.cfg.WorkDir, e.Name())); err != nil {
			r.log.Warn("cannot remove job scratch left by an earlier run", "path", e.Name(), "error", err)
			continue
		}
		removed++
	}
	if removed > 0 {
		r.log.Info("removed job scratch left by an earlier run", "dir", r.cfg.WorkDir, "count", removed)
	}
}

// scratch is a job's scratch directory, made on first use: most JSON jobs
// have no inputs and no output file, and need none.
type scratch struct {
	parent, prefix string
	dir            string
}

func (s *scratch) path() (string, error) {
	if s.dir == "" {
		d, err := os.MkdirTemp(s.parent, s.prefix)
		if err != nil {
			return "", err
		}
		s.dir = d
	}
	return s.dir, nil
}

func (s *scratch) remove() {
	if s.dir != "" {
		os.RemoveAll(s.dir)
	}
}
