package main

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stokerhq/stoker/plugins"
)

// stable-diffusion.cpp reports through two process-wide callbacks, a log
// line and a progress step, and says why a call failed only in its log.
// The observer of the call in flight receives both (the engine runs one
// engine call at a time, so there is never more than one): it turns steps
// into the job's progress events, tells the sampling steps from the VAE
// decode by the engine's own log lines, ships warnings and errors to the
// job's log, and keeps the last error line for the failure message.

// phase is what the engine call in flight is doing.
type phase int

const (
	phaseIdle   phase = iota
	phaseLoad         // new_sd_ctx: reading weights
	phaseSample       // generate_image, until the decode starts
	phaseDecode       // generate_image, VAE decode
)

// Progress units of the job's events.
const (
	unitLoad   = "load"   // weight loading: tensors or bytes
	unitStep   = "step"   // sampling steps
	unitDecode = "decode" // VAE decode: 0/1 when it starts, 1/1 when done (tiles when tiled)
)

// active is the observer of the engine call in flight, nil between calls.
var active atomic.Pointer[observer]

// observer follows one engine call (a load or a generation).
type observer struct {
	log hclog.Logger
	ev  plugins.Events // nil: no job to report to

	mu      sync.Mutex // guards the fields below; calls into ev are made under it
	phase   phase
	lastErr string          // last error line the engine logged
	stopErr error           // the job's events failed: the host is gone
	cancel  func()          // asks the engine to stop; nil outside a generation
	done    <-chan struct{} // closed when the job is cancelled (nil: never)
	decoded bool            // the decode finished
	began   time.Time       // the call began
	decode  time.Time       // the VAE decode began (zero: not yet)
	// engineSampling is the sampling time the engine measured itself and
	// logged ("sampling completed, taking 0.40s"), as sd-cli reports it.
	engineSampling time.Duration
}

func newObserver(log hclog.Logger, ev plugins.Events) *observer {
	return &observer{log: log, ev: ev}
}

// begin makes o the observer of the engine call about to start.
func (o *observer) begin(p phase) {
	o.mu.Lock()
	o.phase = p
	o.lastErr = ""
	o.began = time.Now()
	o.mu.Unlock()
	active.Store(o)
}

// end detaches o from the engine once the call has returned.
func (o *observer) end() {
	active.CompareAndSwap(o, nil)
	o.mu.Lock()
	o.phase = phaseIdle
	o.cancel, o.done = nil, nil
	o.mu.Unlock()
}

// stopped returns the error of the job's events, if they failed.
func (o *observer) stopped() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.stopErr
}

// split divides a generation that ended at end into its sampling (with the
// text encoding before it) and its VAE decode.
func (o *observer) split(end time.Time) (sample, decode time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.decode.IsZero() {
		return end.Sub(o.began), 0
	}
	return o.decode.Sub(o.began), end.Sub(o.decode)
}

// engineSampled returns the sampling time the engine logged.
func (o *observer) engineSampled() time.Duration {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.engineSampling
}

// failure is the error of a failed engine call: what it was doing and the
// last error line the engine logged.
func (o *observer) failure(what string) error {
	o.mu.Lock()
	msg := o.lastErr
	o.mu.Unlock()
	if msg == "" {
		msg = "no reason given in its log"
	}
	return plugins.Errorf(plugins.ErrEngine, "stable-diffusion.cpp could not %s: %s", what, msg)
}

// onLog takes one line of the engine's log.
func (o *observer) onLog(level int, text string) {
	text = strings.TrimSpace(text)
	// Lines come as "file.cpp:123 - message".
	if i := strings.Index(text, " - "); i > 0 && !strings.Contains(text[:i], " ") {
		text = text[i+3:]
	}
	if text == "" {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	switch level {
	case sdLogDebug:
		o.log.Trace(text)
	case sdLogInfo:
		o.log.Debug(text)
		o.phaseFromLogLocked(text)
	case sdLogWarn:
		o.log.Warn(text)
		o.shipLocked("warn", text)
	default:
		o.log.Error(text)
		o.lastErr = text
		o.shipLocked("error", text)
	}
}

// phaseFromLogLocked follows the engine from sampling into the VAE decode
// by its info lines ("decoding 1 latents", "decode_first_stage completed").
func (o *observer) phaseFromLogLocked(text string) {
	switch {
	case o.phase == phaseSample && strings.HasPrefix(text, "decoding "):
		o.phase = phaseDecode
		o.decode = time.Now()
		o.progressLocked(0, 1, unitDecode)
	case o.phase == phaseSample && strings.HasPrefix(text, "sampling completed, taking "):
		if d, err := time.ParseDuration(strings.TrimPrefix(text, "sampling completed, taking ")); err == nil {
			o.engineSampling += d
		}
	case o.phase == phaseDecode && !o.decoded && strings.HasPrefix(text, "decode_first_stage completed"):
		o.decoded = true
		o.progressLocked(1, 1, unitDecode)
	}
}

// onProgress takes one progress step of the engine.
func (o *observer) onProgress(step, steps int) {
	if step < 0 || steps <= 0 {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	switch o.phase {
	case phaseLoad:
		o.progressLocked(step, steps, unitLoad)
	case phaseSample:
		o.cancelIfDoneLocked()
		o.progressLocked(step, steps, unitStep)
	case phaseDecode:
		if !o.decoded && step < steps { // tiles of a tiled decode; the end is reported by the log
			o.progressLocked(step, steps, unitDecode)
		}
	}
}

// cancelIfDoneLocked repeats the cancellation request while the job is
// cancelled: the engine drops a request made just before it started.
func (o *observer) cancelIfDoneLocked() {
	if o.cancel == nil || o.done == nil {
		return
	}
	select {
	case <-o.done:
		o.cancel()
	default:
	}
}

// progressLocked sends a progress event; when the host is gone it asks the
// engine to stop.
func (o *observer) progressLocked(step, steps int, unit string) {
	if o.ev == nil || o.stopErr != nil {
		return
	}
	if err := o.ev.Progress(uint64(step), uint64(steps), unit); err != nil {
		o.stopErr = plugins.Errorf(plugins.ErrCancelled, "job stopped by the host: %w", err)
		if o.cancel != nil {
			o.cancel()
		}
	}
}

// shipLocked sends a line to the job's log.
func (o *observer) shipLocked(level, text string) {
	if o.ev == nil || o.stopErr != nil {
		return
	}
	_ = o.ev.Log(level, "stable-diffusion.cpp: "+text)
}

// The engine's log levels (enum sd_log_level_t).
const (
	sdLogDebug = iota
	sdLogInfo
	sdLogWarn
	sdLogError
)

// engineLog and engineProgress are the callbacks' entry points (called from
// C through binding_export_cgo.go; tests call them directly).
func engineLog(level int, text string) {
	if o := active.Load(); o != nil {
		o.onLog(level, text)
	}
}

func engineProgress(step, steps int) {
	if o := active.Load(); o != nil {
		o.onProgress(step, steps)
	}
}
