package engines

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/stokerhq/stoker/plugins"
)

// State is where a plugin is in its life.
type State string

const (
	StateStarting    State = "starting"    // being launched
	StateReady       State = "ready"       // serving
	StateNotReady    State = "not_ready"   // running, but says it cannot serve (see LastError)
	StateRestarting  State = "restarting"  // died; waiting to be relaunched
	StateQuarantined State = "quarantined" // crash-looped; out of service until the cooldown ends
	StateStopped     State = "stopped"     // the host is closed
)

// PluginStatus is a snapshot of one plugin.
type PluginStatus struct {
	Path             string
	Name             string
	State            State
	Pid              int
	Description      *plugins.Description // nil until the first Describe
	Restarts         int                  // relaunches after a death
	Crashes          int                  // deaths, failed starts included
	LastError        string
	QuarantinedUntil time.Time
	Since            time.Time // when State was entered
}

// slot supervises one plugin executable across its successive processes.
type slot struct {
	host      *Host
	path      string
	name      string
	firstDone chan struct{} // closed after the first launch attempt
	firstOnce sync.Once

	mu       sync.Mutex // guards all below
	proc     *plugins.Plugin
	desc     *plugins.Description
	state    State
	since    time.Time
	lastErr  string
	restarts int
	crashes  int
	breaker  Breaker
}

func (s *slot) current() (*plugins.Plugin, *plugins.Description) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != StateReady && s.state != StateNotReady || s.proc == nil {
		return nil, nil
	}
	select {
	case <-s.proc.Exited():
		// Dead, and supervise has not yet noticed: not a route for jobs.
		return nil, nil
	default:
	}
	return s.proc, s.desc
}

func (s *slot) description() *plugins.Description {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.desc
}

func (s *slot) status() PluginStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := PluginStatus{
		Path: s.path, Name: s.name, State: s.state, Description: s.desc,
		Restarts: s.restarts, Crashes: s.crashes, LastError: s.lastErr, Since: s.since,
	}
	if s.proc != nil {
		st.Pid = s.proc.Pid()
	}
	if q, until := s.breaker.Quarantined(s.host.cfg.Now()); q {
		st.QuarantinedUntil = until
	}
	return st
}

func (s *slot) setLocked(st State) {
	s.state = st
	s.since = s.host.cfg.Now()
}

// supervise launches the plugin and relaunches it whenever it dies, until
// ctx is done. It runs on its own goroutine, owned by the Host.
func (s *slot) supervise(ctx context.Context) {
	defer s.firstOnce.Do(func() { close(s.firstDone) })
	log := s.host.log.With("plugin", s.name)
	streak := 0 // consecutive deaths without a quiet period
	for {
		p, d, err := s.launch()
		s.firstOnce.Do(func() { close(s.firstDone) })
		if err == nil {
			s.mu.Lock()
			s.proc, s.desc = p, d
			if d.Ready {
				s.setLocked(StateReady)
				s.lastErr = ""
			} else {
				s.setLocked(StateNotReady)
				s.lastErr = d.NotReadyReason
			}
			s.mu.Unlock()
			s.host.notify()
			log.Info("plugin serving", "pid", p.Pid(), "version", d.Version, "engines", d.Engines, "kinds", d.Kinds, "ready", d.Ready, "reason", d.NotReadyReason)
			started := s.host.cfg.Now()
			select {
			case <-ctx.Done():
				p.Kill()
				s.stop()
				return
			case <-p.Exited():
			}
			p.Kill() // releases the connection and go-plugin's goroutines
			st := p.ExitStatus()
			err = fmt.Errorf("plugin process %s", st)
			if s.host.cfg.Now().Sub(started) > s.host.cfg.Breaker.windowOrDefault() {
				streak = 0 // it had served a whole window quietly
			}
			log.Error("plugin died", "pid", p.Pid(), "status", st.String(), "stderr_tail", p.StderrTail())
		} else {
			log.Error("plugin failed to start", "error", err)
		}
		if ctx.Err() != nil {
			s.stop()
			return
		}
		streak++
		now := s.host.cfg.Now()
		s.mu.Lock()
		s.proc = nil
		s.crashes++
		s.lastErr = err.Error()
		tripped := s.breaker.Crash(now)
		wait := time.Duration(0)
		if streak > 1 {
			wait = s.host.cfg.Restart.Delay(streak - 1)
		}
		if tripped {
			_, until := s.breaker.Quarantined(now)
			wait = max(wait, until.Sub(now))
			s.setLocked(StateQuarantined)
			log.Warn("plugin quarantined after repeated crashes", "until", until, "crashes", s.breaker.Crashes, "window", s.breaker.Window)
		} else {
			s.setLocked(StateRestarting)
		}
		s.restarts++
		s.mu.Unlock()
		s.host.notify()
		if !sleepCtx(ctx, wait) {
			s.stop()
			return
		}
	}
}

func (s *slot) stop() {
	s.mu.Lock()
	s.proc = nil
	s.setLocked(StateStopped)
	s.mu.Unlock()
	s.host.notify()
}

// launch starts a fresh process (a used go-plugin client cannot be
// restarted) and asks it to describe itself, both within StartTimeout.
func (s *slot) launch() (*plugins.Plugin, *plugins.Description, error) {
	s.mu.Lock()
	s.setLocked(StateStarting)
	s.mu.Unlock()
	cfg := s.host.cfg
	p, err := plugins.Launch(plugins.LaunchConfig{
		Path:         s.path,
		Env:          cfg.Env,
		Logger:       cfg.Logger,
		StartTimeout: cfg.StartTimeout,
	})
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.StartTimeout)
	defer cancel()
	d, err := p.Describe(ctx)
	if err != nil {
		p.Kill()
		return nil, nil, fmt.Errorf("describe within %s: %w", cfg.StartTimeout, err)
	}
	if d.ContractVersion != plugins.ContractVersion {
		p.Kill()
		return nil, nil, fmt.Errorf("plugin speaks contract v%d, this supervisor v%d", d.ContractVersion, plugins.ContractVersion)
	}
	return p, d, nil
}

func (b *Breaker) windowOrDefault() time.Duration {
	if b.Window == 0 {
		return 5 * time.Minute
	}
	return b.Window
}

// sleepCtx waits d or until ctx is done; it reports whether the full wait
// passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
