package localjobs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/stokerhq/stoker/supervisor/internal/jobslot"
	"github.com/stokerhq/stoker/supervisor/internal/localmodels"
	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

// Reporter is the method set through which the job runner reports a
// job's outcome (studio.Reporter's, which this package does not import).
type Reporter interface {
	CompleteJSON(ctx context.Context, result json.RawMessage, prompt string) error
	Upload(ctx context.Context, ext, prompt string, open func() (io.ReadCloser, error)) error
	Fail(ctx context.Context, message string, retryable bool) error
}

// Runner runs one job to its end and reports its outcome through rep
// (the agent adapts jobs.Runner). Admit refuses a job whose engine cannot
// take it now, without blocking.
type Runner interface {
	Admit(claim *protocol.JobOfferClaim) error
	RunJob(ctx context.Context, claim *protocol.JobOfferClaim, rep Reporter)
}

// Availability says whether the node can run a kind of task on an engine
// now (the agent asks the engine host's ready plugins).
type Availability int

const (
	// Available: a ready plugin serves the engine and the kind.
	Available Availability = iota
	// WrongKind: the engine is served, but not for this kind (an image
	// request for a language model).
	WrongKind
	// NoEngine: no ready plugin serves the engine now.
	NoEngine
)

// Config configures a Service.
type Config struct {
	// Models is the local model catalog. Required.
	Models *localmodels.Catalog
	// Runner runs the jobs. Required.
	Runner Runner
	// Slot is the node's job slot, shared with the studio session.
	// Required.
	Slot *jobslot.Slot
	// Serves says whether engine can run kind now. Required.
	Serves func(engine string, kind protocol.TaskKind) Availability
	// InputDir holds the files uploaded with local jobs (audio to
	// transcribe) and their binary results while they are handed over;
	// the model store must allow file:// inputs inside it
	// (models.Config.LocalInputDir). Required.
	InputDir string
	// Logger receives a line per local job. (a null logger)
	Logger hclog.Logger
	// History is how many finished jobs GET /jobs lists. (50)
	History int
	// MaxResultBytes bounds a binary result handed back. (512 MiB)
	MaxResultBytes int64
}

// Service runs local jobs. Create it with New; Close cancels the jobs in
// flight and waits for them.
type Service struct {
	cfg Config
	log hclog.Logger

	ctx    context.Context // the service's lifetime; Close cancels it
	cancel context.CancelFunc
	wg     sync.WaitGroup // jobs in flight

	mu       sync.Mutex // guards recent, totals, stopping and wg.Add
	recent   []*Job     // newest last; at most History finished plus the unfinished
	totals   Totals
	stopping bool // Shutdown began: new requests are refused
}

// New checks cfg, applies defaults and returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Models == nil || cfg.Runner == nil || cfg.Slot == nil || cfg.Serves == nil || cfg.InputDir == "" {
		return nil, errors.New("localjobs: Models, Runner, Slot, Serves and InputDir are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.History <= 0 {
		cfg.History = 50
	}
	if cfg.MaxResultBytes <= 0 {
		cfg.MaxResultBytes = 512 << 20
	}
	if err := os.MkdirAll(cfg.InputDir, 0o700); err != nil {
		return nil, fmt.Errorf("localjobs: %w", err)
	}
	// Whatever an earlier run left there belongs to no job.
	if ents, err := os.ReadDir(cfg.InputDir); err == nil {
		for _, e := range ents {
			os.RemoveAll(filepath.Join(cfg.InputDir, e.Name()))
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Service{cfg: cfg, log: cfg.Logger.Named("localjobs"), ctx: ctx, cancel: cancel}, nil
}

// Close cancels every local job in flight (each reports as cancelled to
// its request) and waits for them. It is safe to call more than once.
func (s *Service) Close() {
	s.mu.Lock()
	s.stopping = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
}

// Shutdown is the agent's drain for local jobs: new requests are refused
// (unavailable), and the jobs in flight, waiting ones included, get until
// ctx ends to finish; then they are cancelled and Shutdown waits for them
// to answer, and returns ctx's cause.
func (s *Service) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.stopping = true
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { // ends when the jobs do, at the latest after the cancel below
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.cancel()
	<-done
	return context.Cause(ctx)
}

// Models returns the local model catalog.
func (s *Service) Models() *localmodels.Catalog { return s.cfg.Models }

// Request is one local job.
type Request struct {
	// Model is the local catalog's model id.
	Model string
	// Task is the task; an STT task's InputURL is set from Audio.
	Task protocol.Task
	// Audio is the audio to transcribe, for an STT task; it is read to
	// the end (the caller bounds it) before the job waits for the slot.
	Audio io.Reader
	// Text, when set for an llm task, takes the answer's text as the
	// engine generates it, piece by piece, before Run returns; an error
	// from it (the client left) cancels the job.
	Text func(piece string) error
	// Queued, when set, is called once if the request has to wait for
	// the slot.
	Queued func()
}

// Result is a completed local job's output: JSON for llm and STT, a file
// for the binary kinds.
type Result struct {
	JobID string
	JSON  json.RawMessage
	// Ext and File are a binary result's extension and content, File
	// positioned at its start and already unlinked; the caller closes it.
	Ext  string
	File *os.File
	Size int64
}

// Close closes a binary result's file.
func (r *Result) Close() {
	if r != nil && r.File != nil {
		r.File.Close()
	}
}

// Run runs req as a local job and returns its result. It blocks while the
// job waits for the slot and runs; ctx ending (the client left) cancels
// the job. The error is an *Error whose Code says what went wrong.
func (s *Service) Run(ctx context.Context, req Request) (*Result, error) {
	m, ok := s.cfg.Models.Get(req.Model)
	if !ok {
		return nil, &Error{Code: CodeUnknownModel, Message: fmt.Sprintf("model %.128q is not in the local model catalog (GET /models lists it)", req.Model)}
	}
	switch s.cfg.Serves(m.Engine, req.Task.Kind) {
	case WrongKind:
		return nil, &Error{Code: CodeWrongKind, Message: fmt.Sprintf("model %q (engine %s) does not serve %s tasks", m.ID, m.Engine, req.Task.Kind)}
	case NoEngine:
		return nil, &Error{Code: CodeUnavailable, Message: fmt.Sprintf("no ready plugin serves engine %s on this node now", m.Engine)}
	}
	id := "local-" + randomHex(8)
	src := m.Source()
	task := req.Task
	if req.Audio != nil && task.STT != nil {
		path, err := s.saveInput(id, req.Audio)
		if err != nil {
			return nil, err
		}
		defer os.Remove(path)
		p := *task.STT
		p.InputURL = "file://" + path
		task.STT = &p
	}
	if task.Image != nil && m.CliDefaults != nil {
		// A person asking for an image without a size means the model's
		// own (512×512 for sd-turbo, 64×64 for tiny-sd), not the spec's
		// 512×512 default, which a studio never relies on.
		p := *task.Image
		if p.Width == nil && p.Height == nil {
			p.Width, p.Height = &m.CliDefaults.Width, &m.CliDefaults.Height
		}
		task.Image = &p
	}
	task, err := normalize(task)
	if err != nil {
		return nil, &Error{Code: CodeBadRequest, Message: err.Error()}
	}
	claim := &protocol.JobOfferClaim{JobID: id, GameID: "local", AssetName: "local/" + m.ID, Model: m.ID, Task: &task, ModelSource: &src}
	if err := claim.Validate(); err != nil {
		return nil, &Error{Code: CodeBadRequest, Message: err.Error()}
	}

	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return nil, &Error{Code: CodeUnavailable, Message: "the agent is stopping"}
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(s.ctx, func() { cancel(errors.New("the agent is stopping")) })
	defer stop()

	job := s.begin(id, m.ID, task.Kind)
	if err := s.acquire(ctx, job, req.Queued); err != nil {
		s.finish(job, err)
		return nil, err
	}
	defer s.cfg.Slot.Release()
	if err := s.cfg.Runner.Admit(claim); err != nil {
		err = &Error{Code: CodeUnavailable, Message: err.Error()}
		s.finish(job, err)
		return nil, err
	}
	s.update(job, func(j *Job) { j.State, j.Started = StateRunning, time.Now() })
	s.log.Info("local job started", "job", id, "model", m.ID, "kind", task.Kind)
	rep := &reporter{dir: s.cfg.InputDir, max: s.cfg.MaxResultBytes}
	var r Reporter = rep
	if req.Text != nil && task.Kind == protocol.KindLLM {
		r = &textReporter{reporter: rep, text: req.Text}
	}
	s.cfg.Runner.RunJob(ctx, claim, r)
	res, err := rep.outcome()
	if res != nil {
		res.JobID = id
	}
	s.finish(job, err)
	return res, err
}

// acquire waits for the slot, telling queued when it has to.
func (s *Service) acquire(ctx context.Context, job *Job, queued func()) error {
	if s.cfg.Slot.TryAcquire(jobslot.Local) {
		return nil
	}
	if queued != nil {
		queued()
	}
	err := s.cfg.Slot.Acquire(ctx, jobslot.Local)
	switch {
	case errors.Is(err, jobslot.ErrQueueFull):
		st := s.cfg.Slot.State()
		return &Error{Code: CodeQueueFull, Message: fmt.Sprintf("the node is busy and %d requests already wait; try again later", st.Waiting)}
	case err != nil:
		return &Error{Code: CodeCancelled, Message: "the request ended while waiting for the node's job slot: " + context.Cause(ctx).Error()}
	}
	return nil
}

// saveInput writes an uploaded input into InputDir under a random name.
func (s *Service) saveInput(id string, r io.Reader) (string, error) {
	f, err := os.CreateTemp(s.cfg.InputDir, id+"-input-*")
	if err != nil {
		return "", fmt.Errorf("localjobs: save input: %w", err)
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		var e *Error
		if errors.As(err, &e) {
			return "", e
		}
		return "", &Error{Code: CodeBadRequest, Message: "reading the uploaded file: " + err.Error()}
	}
	return f.Name(), nil
}

// normalize runs the task through its wire form, so that a local task
// gets exactly the checks and defaults a studio task gets.
func normalize(t protocol.Task) (protocol.Task, error) {
	b, err := json.Marshal(t)
	if err != nil {
		return protocol.Task{}, err
	}
	var out protocol.Task
	if err := json.Unmarshal(b, &out); err != nil {
		return protocol.Task{}, err
	}
	if err := out.Validate(); err != nil {
		return protocol.Task{}, err
	}
	return out, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
