package engines

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/supervisor/internal/backoff"
)

// Config configures a Host.
type Config struct {
	// Plugins are the plugin executables to run (see Discover).
	Plugins []string
	// Logger receives the host's lines and, under each plugin's name, the
	// plugins' own. (default: discard)
	Logger hclog.Logger
	// Env is added to every plugin's environment.
	Env []string
	// StartTimeout bounds a plugin's launch and its first Describe; a
	// plugin that misses it is killed and counted as a failed start.
	// (default 10s)
	StartTimeout time.Duration
	// Restart is the backoff between relaunches of a plugin that keeps
	// dying. The first relaunch after a quiet period is immediate.
	// (default 100ms doubling to 10s)
	Restart backoff.Policy
	// Breaker is the crash-loop policy each plugin starts with (default 3
	// crashes in 5 minutes quarantine a plugin for 1 minute).
	Breaker Breaker
	// StallTimeout fails a job whose plugin reports no event (progress,
	// log, output) for this long, and kills the plugin. Per engine id in
	// StallTimeouts; 0 means DefaultStallTimeout.
	StallTimeout  time.Duration
	StallTimeouts map[string]time.Duration
	// JobTimeouts is the hard deadline of a job per task kind, besides
	// the stall watchdog: a plugin that reports progress forever never
	// stalls. A job past it fails as ErrTimedOut and the plugin is killed.
	// Kinds not listed take DefaultJobTimeouts.
	JobTimeouts map[plugins.TaskKind]time.Duration
	// SHA256 pins plugin executables to their hex SHA-256, by absolute
	// path or by file name ("synthetic-plugin": every plugin of that name;
	// a path wins over a name). A pinned plugin is hashed at each launch,
	// from the descriptor it is then executed from; a mismatch refuses the
	// launch (a failed start, which the breaker counts) with an error
	// saying so. A pin that names none of Plugins stops Start: a typo
	// would otherwise leave the plugin it meant unpinned.
	SHA256 map[string]string
	// RequirePins makes Start refuse to run a plugin without a pin in
	// SHA256.
	RequirePins bool
	// DeviceRefresh is how often a serving plugin is asked to describe
	// itself again, so that its device's memory in Status (and from there
	// in the heartbeats' capabilities) follows the device: the rest of the
	// answer is kept from its launch. Negative: never. (default 30s)
	DeviceRefresh time.Duration
	// NoSpare turns the warm spares off. By default each plugin has one:
	// a second process, started, handshaken and described, idle, swapped
	// in at once when the serving one dies (a crash, a kill by the
	// watchdog) instead of a process start, handshake and Describe. It
	// costs one idle process per plugin (its resident memory without a
	// model); a node short of memory turns it off. (false: a spare each)
	NoSpare bool
	// Pids, if set, is told of every plugin process as it starts and once
	// it is gone, so the agent can record them for its start-up reaper.
	Pids PidRecorder
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// PidRecorder keeps track of live plugin processes. Its methods are called
// from the host's goroutines and must not block for long.
type PidRecorder interface {
	// Record is called with a plugin's pid as soon as the process exists.
	Record(pid int)
	// Forget is called once that process is gone.
	Forget(pid int)
}

// DefaultJobTimeouts are the hard job deadlines per task kind when none is
// configured. They must never end a real job, so each is several times the
// longest one a slow node runs: an image of 1024² at 50 steps on a CPU
// takes tens of minutes; an LLM answer of a few thousand tokens on a CPU
// under an hour; speech-to-text on a CPU runs at about real time, and an
// input is at most a few hours of audio; a video of seconds at many
// frames on a CPU takes hours. A job past its deadline fails retryable (a
// faster node may finish it).
var DefaultJobTimeouts = map[plugins.TaskKind]time.Duration{
	plugins.KindImage: 2 * time.Hour,
	plugins.KindLLM:   2 * time.Hour,
	plugins.KindTTS:   2 * time.Hour,
	plugins.KindSTT:   6 * time.Hour,
	plugins.KindVideo: 6 * time.Hour,
}

// jobTimeout is the hard deadline for a job of kind.
func (h *Host) jobTimeout(kind plugins.TaskKind) time.Duration {
	if d, ok := h.cfg.JobTimeouts[kind]; ok && d > 0 {
		return d
	}
	if d, ok := DefaultJobTimeouts[kind]; ok {
		return d
	}
	return 6 * time.Hour
}

// DefaultDeviceRefresh is how often a serving plugin's device is read
// again when Config.DeviceRefresh is not set.
const DefaultDeviceRefresh = 30 * time.Second

// DefaultStallTimeout is the stall window when none is configured. Engines
// report progress every few seconds at most, so minutes of silence mean a
// wedged plugin.
const DefaultStallTimeout = 5 * time.Minute

// Host runs the engine plugins. Its methods are safe for concurrent use.
type Host struct {
	cfg    Config
	log    hclog.Logger
	slots  []*slot
	cancel context.CancelFunc
	wg     sync.WaitGroup // one per slot's supervise loop

	changedCh chan struct{} // one-slot "a plugin changed state" notice

	// jobs remembers the jobs that brought down plugin instances, and the
	// ones this node refuses.
	jobs *jobMemory
}

// Start launches every configured plugin and returns once each has either
// answered Describe or failed its first start (it keeps being retried in
// the background). Close stops them all.
func Start(ctx context.Context, cfg Config) (*Host, error) {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 10 * time.Second
	}
	if cfg.Restart.Base == 0 {
		cfg.Restart.Base = 100 * time.Millisecond
	}
	if cfg.Restart.Max == 0 {
		cfg.Restart.Max = 10 * time.Second
	}
	if cfg.StallTimeout == 0 {
		cfg.StallTimeout = DefaultStallTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.DeviceRefresh == 0 {
		cfg.DeviceRefresh = DefaultDeviceRefresh
	}
	h := &Host{cfg: cfg, log: cfg.Logger.Named("engines"), jobs: newJobMemory(), changedCh: make(chan struct{}, 1)}
	seen := map[string]bool{}
	for _, path := range cfg.Plugins {
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, fmt.Errorf("engines: plugin %s: %w", path, err)
		}
		if seen[abs] {
			continue
		}
		seen[abs] = true
		s := &slot{host: h, path: abs, name: filepath.Base(abs), breaker: cfg.Breaker, firstDone: make(chan struct{}), servingCh: make(chan struct{})}
		s.state = StateStarting
		s.pin = cfg.SHA256[abs]
		if s.pin == "" {
			s.pin = cfg.SHA256[s.name]
		}
		h.slots = append(h.slots, s)
	}
	if err := checkPins(cfg, h.slots); err != nil {
		return nil, err
	}
	loopCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	h.cancel = cancel
	for _, s := range h.slots {
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			s.supervise(loopCtx)
		}()
	}
	for _, s := range h.slots {
		select {
		case <-s.firstDone:
		case <-ctx.Done():
			h.Close()
			return nil, ctx.Err()
		}
	}
	return h, nil
}

// checkPins refuses a pin that names no plugin, and with RequirePins a
// plugin without a pin.
func checkPins(cfg Config, slots []*slot) error {
	var errs []error
	for key := range cfg.SHA256 {
		if !slices.ContainsFunc(slots, func(s *slot) bool { return s.path == key || s.name == key }) {
			errs = append(errs, fmt.Errorf("plugin_sha256 pins %q, which names no plugin found (by file name or absolute path)", key))
		}
	}
	if cfg.RequirePins {
		for _, s := range slots {
			if s.pin == "" {
				errs = append(errs, fmt.Errorf("require_pins is set and plugin %s has no pin in plugin_sha256 (sha256sum %s)", s.path, s.path))
			}
		}
	}
	if len(errs) > 0 {
		slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
		return fmt.Errorf("engines: %w", errors.Join(errs...))
	}
	return nil
}

// Close kills every plugin and waits for their supervisors to finish. It
// may be called more than once.
func (h *Host) Close() error {
	h.cancel()
	h.wg.Wait()
	return nil
}

// Changed returns a channel that receives after any plugin changed state
// (became ready, crashed, was quarantined). Repeated changes collapse into
// one pending notice.
func (h *Host) Changed() <-chan struct{} { return h.changedCh }

func (h *Host) notify() {
	select {
	case h.changedCh <- struct{}{}:
	default:
	}
}

// route returns the slot serving engine, or nil.
func (h *Host) route(engine string) *slot {
	for _, s := range h.slots {
		if d := s.description(); d != nil && slices.Contains(d.Engines, engine) {
			return s
		}
	}
	return nil
}

// ErrUnavailable is wrapped by Check's error when the engine is only
// briefly out of service (quarantined after repeated crashes, or waiting
// out a restart backoff): the caller should refuse the offer in a way that
// costs the job no attempt, since this node may serve it a minute later.
var ErrUnavailable = errors.New("engine briefly unavailable")

// Check reports whether an offer of job jobID for engine and kind should be
// taken now. It refuses what another node could serve better right now:
//   - a job that brought down two plugin instances here (it fails
//     retryable; a bigger node may serve it);
//   - an engine whose plugin is quarantined after repeated crashes, or
//     dying over and over at idle and waiting out its restart backoff
//     (wrapping ErrUnavailable);
//   - an engine whose plugin says it cannot serve, or is stopped.
//
// A plugin that is being (re)started at once is not refused: a restart
// takes milliseconds and Run waits for it. A job for an engine no plugin
// serves is not refused here: it is accepted and failed loudly (spec §6.4),
// as the reference worker does.
func (h *Host) Check(jobID, engine string, kind plugins.TaskKind) error {
	if plugin, refused := h.jobs.refuses(jobID); refused {
		return fmt.Errorf("job %.64q brought down 2 %s instances on this node, which refuses it so that another node can take it", jobID, plugin)
	}
	s := h.route(engine)
	if s == nil {
		return nil
	}
	st := s.status()
	switch st.State {
	case StateReady:
		return nil
	case StateQuarantined:
		return fmt.Errorf("%w: engine %s is quarantined after repeated crashes (until %s)", ErrUnavailable, engine, st.QuarantinedUntil.Format(time.RFC3339))
	case StateRestarting:
		if st.NextStart.After(h.cfg.Now()) {
			return fmt.Errorf("%w: engine %s is restarting after repeated deaths (next start %s)", ErrUnavailable, engine, st.NextStart.Format(time.RFC3339Nano))
		}
		return nil
	case StateNotReady:
		return fmt.Errorf("engine %s is not ready: %s", engine, st.LastError)
	case StateStopped:
		return fmt.Errorf("engine %s is stopped", engine)
	default: // starting: Run waits
		return nil
	}
}

// Offerings returns the task kinds and per-kind model ids that the ready,
// healthy plugins serve now, for the advertised capabilities.
func (h *Host) Offerings() map[plugins.TaskKind][]string {
	out := map[plugins.TaskKind][]string{}
	for _, s := range h.slots {
		st := s.status()
		if st.State != StateReady || st.Description == nil {
			continue
		}
		for _, k := range st.Description.Kinds {
			out[k] = append(out[k], st.Description.Models[k]...)
		}
	}
	for k, m := range out {
		slices.Sort(m)
		out[k] = slices.Compact(m)
	}
	return out
}

// Status reports every plugin's state.
func (h *Host) Status() []PluginStatus {
	out := make([]PluginStatus, 0, len(h.slots))
	for _, s := range h.slots {
		out = append(out, s.status())
	}
	return out
}

// Run runs a job on the plugin serving req.Engine and blocks until it is
// finished. The outcome is nil or a *plugins.JobError:
//   - ErrNoEngine when no plugin serves the engine id (no fallback, I-13);
//   - ErrUnsupported when the plugin does not serve the task's kind;
//   - ErrCrashed / ErrOutOfMemory when the plugin died mid-job (it is
//     relaunched), or ErrPoison when this job has now crashed two plugin
//     instances in a row;
//   - ErrStalled when the plugin reported nothing for the stall window, or
//     ErrTimedOut when the job ran past its kind's deadline (either way it
//     is killed and relaunched);
//   - whatever typed error the plugin returned.
func (h *Host) Run(ctx context.Context, req *plugins.RunRequest, ev plugins.Events) error {
	s := h.route(req.Engine)
	if s == nil {
		return plugins.Errorf(plugins.ErrNoEngine, "no engine plugin serves %q on this worker", req.Engine)
	}
	p, d := s.waitServing(ctx, h.cfg.StartTimeout)
	if p == nil || d == nil {
		st := s.status()
		if ctx.Err() != nil {
			return &plugins.JobError{Kind: plugins.ErrCancelled, Message: "job cancelled while waiting for plugin " + s.name, Err: ctx.Err()}
		}
		return plugins.Errorf(plugins.ErrEngine, "engine %s is unavailable (plugin %s %s): %s", req.Engine, s.name, st.State, st.LastError)
	}
	if !d.Ready {
		return plugins.Errorf(plugins.ErrEngine, "engine %s is not ready: %s", req.Engine, d.NotReadyReason)
	}
	if !slices.Contains(d.Kinds, req.Task.Kind) {
		return plugins.Errorf(plugins.ErrUnsupported, "cannot serve %s: plugin %s serves %v", req.Task.Kind, s.name, d.Kinds)
	}
	s.markRan(p)
	err := h.runWatched(ctx, s, p, req, ev)
	je := plugins.AsJobError(err)
	if je == nil {
		s.markHealthy(p)
		h.jobs.forget(req.JobID)
		return nil
	}
	switch je.Kind {
	case plugins.ErrCrashed, plugins.ErrOutOfMemory, plugins.ErrStalled, plugins.ErrTimedOut:
		// Whatever is left of the instance goes; supervise relaunches.
		p.KillNow()
		if n := h.jobs.crash(req.JobID); n >= 2 {
			// Retryable: a node with more memory or another device may
			// serve it, and the studio's attempt count bounds it. This
			// node refuses it from now on (Check).
			h.jobs.refuse(req.JobID, s.name)
			return &plugins.JobError{
				Kind:     plugins.ErrPoison,
				Message:  fmt.Sprintf("poison job here: it has now brought down %d %s instances in a row on this node, which refuses it from now on (another node may serve it); last: %s", n, s.name, je.Message),
				ExitCode: je.ExitCode, Signal: je.Signal, StderrTail: je.StderrTail, Err: je,
			}
		}
	case plugins.ErrCancelled:
	default:
		// The plugin handled the job and reported its failure: healthy.
		s.markHealthy(p)
		h.jobs.forget(req.JobID)
	}
	return je
}

// runWatched runs req on p under the stall watchdog and the kind's hard
// deadline. Every event re-arms the watchdog; when either fires, the
// plugin is killed (a wedged engine may not honour cancellation) and the
// job fails as stalled or timed out, whichever fired first.
func (h *Host) runWatched(ctx context.Context, s *slot, p *plugins.Plugin, req *plugins.RunRequest, ev plugins.Events) error {
	window := h.cfg.StallTimeout
	if w, ok := h.cfg.StallTimeouts[req.Engine]; ok && w > 0 {
		window = w
	}
	deadline := h.jobTimeout(req.Task.Kind)
	var (
		once    sync.Once
		ended   = make(chan struct{}) // closed when a watchdog fired
		outcome *plugins.JobError     // set before ended is closed
	)
	fire := func(je *plugins.JobError, msg string, args ...any) {
		once.Do(func() {
			outcome = je
			close(ended)
			h.log.Warn(msg, append([]any{"plugin", s.name, "job_id", req.JobID}, args...)...)
			p.KillNow()
		})
	}
	stall := time.AfterFunc(window, func() {
		fire(&plugins.JobError{Kind: plugins.ErrStalled, Message: fmt.Sprintf("plugin %s reported no progress for %s; killed", s.name, window)},
			"job stalled; killing plugin", "window", window)
	})
	defer stall.Stop()
	hard := time.AfterFunc(deadline, func() {
		fire(&plugins.JobError{Kind: plugins.ErrTimedOut, Message: fmt.Sprintf("plugin %s ran the %s job past its %s deadline (job_timeouts); killed", s.name, req.Task.Kind, deadline)},
			"job past its deadline; killing plugin", "deadline", deadline)
	})
	defer hard.Stop()
	err := p.Run(ctx, req, &watchedEvents{Events: ev, rearm: func() { stall.Reset(window) }})
	select {
	case <-ended:
		outcome.StderrTail, outcome.Err = p.StderrTail(), plugins.AsJobError(err)
		return outcome
	default:
		return err
	}
}

// watchedEvents re-arms the stall watchdog on every event.
type watchedEvents struct {
	plugins.Events
	rearm func()
}

func (w *watchedEvents) Progress(step, total uint64, unit string) error {
	w.rearm()
	return w.Events.Progress(step, total, unit)
}

func (w *watchedEvents) Log(level, message string) error {
	w.rearm()
	return w.Events.Log(level, message)
}

func (w *watchedEvents) Output(ext string, p []byte) error {
	w.rearm()
	return w.Events.Output(ext, p)
}

func (w *watchedEvents) Result(json []byte) error {
	w.rearm()
	return w.Events.Result(json)
}

func (w *watchedEvents) Text(piece string) error {
	w.rearm()
	return plugins.StreamText(w.Events, piece)
}
