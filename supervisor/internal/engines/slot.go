package engines

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

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
	// NextStart is when a restarting plugin is launched again after a
	// backoff; zero when it is relaunched at once.
	NextStart time.Time
	Since     time.Time // when State was entered
	// LastExit is when the last instance died (reaped by the host), and
	// LastExitStatus how; zero and "" before any death.
	LastExit       time.Time
	LastExitStatus string
	// SparePid is the warm spare's process, idle and not serving (see
	// Config.NoSpare); 0 when there is none.
	SparePid int
}

// slot supervises one plugin executable across its successive processes.
type slot struct {
	host      *Host
	path      string
	name      string
	pin       string        // the hex SHA-256 it must have, or ""
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
	lastExit time.Time
	lastStat string
	// nextStart is when the backoff before the next launch ends (zero:
	// at once, or not restarting).
	nextStart time.Time
	// servingCh is closed while the slot serves (ready or not ready) and
	// replaced by an open one when the instance dies: Run waits on it.
	servingCh chan struct{}
	// ranJob is set once the current instance was given a job: its death
	// is then the job's doing (poison detection and the breaker deal with
	// that) and it is relaunched at once. Only instances that die on their
	// own, before any job, build a restart streak that backs off.
	ranJob bool
	// healthy is set once the current instance handled a job (success or
	// a reported failure): it ends the breaker's probation.
	healthy bool
	// instance is the process the two flags above are about.
	instance *plugins.Plugin
	// sparePid is the warm spare's process (0: none).
	sparePid int
}

func (s *slot) setSparePid(pid int) {
	s.mu.Lock()
	s.sparePid = pid
	s.mu.Unlock()
	s.host.notify()
}

// countSpareDeath counts a spare that died at idle among the plugin's
// crashes (not the breaker's: the serving instance is fine).
func (s *slot) countSpareDeath() {
	s.mu.Lock()
	s.crashes++
	s.mu.Unlock()
}

// markRan records that instance p was given a job.
func (s *slot) markRan(p *plugins.Plugin) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.instance == p {
		s.ranJob = true
	}
}

// markHealthy records that instance p handled a job.
func (s *slot) markHealthy(p *plugins.Plugin) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.instance == p {
		s.healthy = true
	}
}

// waitServing returns the current instance, waiting up to bound for a
// (re)starting plugin to serve. It returns nils when the plugin is
// quarantined, stopped, or still not serving after bound, or ctx ended.
func (s *slot) waitServing(ctx context.Context, bound time.Duration) (*plugins.Plugin, *plugins.Description) {
	var timeout <-chan time.Time
	for {
		if p, d := s.current(); p != nil {
			return p, d
		}
		s.mu.Lock()
		st, ch := s.state, s.servingCh
		s.mu.Unlock()
		if st == StateQuarantined || st == StateStopped {
			return nil, nil
		}
		if timeout == nil {
			t := time.NewTimer(bound)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, nil
		case <-timeout:
			return nil, nil
		}
	}
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
	st.LastExit, st.LastExitStatus, st.SparePid = s.lastExit, s.lastStat, s.sparePid
	if s.state == StateRestarting {
		st.NextStart = s.nextStart
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
// ctx is done. It runs on its own goroutine, owned by the Host. Unless
// Config.NoSpare, it keeps a warm spare beside the serving instance and
// swaps it in when the serving one dies and would be relaunched at once;
// quarantine and restart backoff discard the spare.
func (s *slot) supervise(ctx context.Context) {
	defer s.firstOnce.Do(func() { close(s.firstDone) })
	log := s.host.log.With("plugin", s.name)
	sp := &spare{s: s, log: log.With("spare", true)}
	defer sp.close()
	streak := 0 // consecutive deaths without a quiet period
	var (
		p   *plugins.Plugin
		d   *plugins.Description
		err error
	)
	for {
		if p == nil {
			s.mu.Lock()
			s.setLocked(StateStarting)
			s.mu.Unlock()
			p, d, err = s.launch()
		}
		s.firstOnce.Do(func() { close(s.firstDone) })
		if err == nil {
			ranJob, lived, ok := s.serve(ctx, log, p, d, sp)
			if !ok {
				return // ctx ended: serve stopped the slot
			}
			st := p.ExitStatus()
			err = fmt.Errorf("plugin process %s", st)
			if ranJob || lived >= s.host.cfg.Restart.Max {
				// A job brought it down, or it had lived a backoff's
				// worth: the relaunch is immediate.
				streak = 0
			}
			log.Error("plugin died", "pid", p.Pid(), "status", st.String(), "stderr_tail", p.StderrTail())
		} else {
			log.Error("plugin failed to start", "error", err)
		}
		p, d = nil, nil
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
		_, until := s.breaker.Quarantined(now)
		if tripped {
			wait = max(wait, until.Sub(now))
		}
		s.mu.Unlock()
		if wait > 0 {
			// Out of service for a while: a spare started now would
			// serve after the quarantine or backoff it was not checked
			// against. It goes before the state says so.
			sp.discard()
		}
		s.mu.Lock()
		if tripped {
			s.setLocked(StateQuarantined)
			log.Warn("plugin quarantined after repeated crashes", "until", until, "crashes", s.breaker.Crashes, "window", s.breaker.Window)
		} else {
			s.setLocked(StateRestarting)
		}
		s.nextStart = time.Time{}
		if wait > 0 {
			s.nextStart = now.Add(wait)
		}
		s.restarts++
		s.mu.Unlock()
		if wait == 0 {
			var ok bool
			if p, d, ok = sp.take(ctx); ok {
				err = nil
				log.Info("spare swapped in", "pid", p.Pid())
				continue
			}
		}
		s.host.notify()
		if !sleepCtx(ctx, wait) {
			s.stop()
			return
		}
	}
}

// serve makes p the serving instance and watches it, and the spare, until p
// dies (ok, with whether it ran a job and how long it lived) or ctx ends
// (!ok: everything is killed and the slot stopped).
func (s *slot) serve(ctx context.Context, log hclog.Logger, p *plugins.Plugin, d *plugins.Description, sp *spare) (ranJob bool, lived time.Duration, ok bool) {
	s.mu.Lock()
	s.proc, s.desc = p, d
	s.instance, s.ranJob, s.healthy = p, false, false
	close(s.servingCh)
	if d.Ready {
		s.setLocked(StateReady)
		s.lastErr = ""
	} else {
		s.setLocked(StateNotReady)
		s.lastErr = d.NotReadyReason
	}
	s.nextStart = time.Time{}
	s.mu.Unlock()
	s.host.notify()
	log.Info("plugin serving", "pid", p.Pid(), "version", d.Version, "engines", d.Engines, "kinds", d.Kinds, "ready", d.Ready, "reason", d.NotReadyReason)
	started := s.host.cfg.Now()
	stopRefresh := s.startRefresh(ctx, p)
	defer stopRefresh()
	for {
		if !s.host.cfg.NoSpare {
			sp.want()
		}
		select {
		case <-ctx.Done():
			stopRefresh()
			p.Kill()
			s.forgetPid(p.Pid())
			sp.close()
			s.stop()
			return false, 0, false
		case r := <-sp.landedC():
			sp.landed(r)
			continue
		case <-sp.exitedC():
			sp.died()
			continue
		case <-sp.retryDue():
			sp.retried()
			continue
		case <-p.Exited():
		}
		break
	}
	st := p.ExitStatus()
	s.mu.Lock()
	s.servingCh = make(chan struct{})
	s.proc = nil
	s.lastExit, s.lastStat = st.At, st.String()
	ranJob, healthy := s.ranJob, s.healthy
	s.instance, s.ranJob, s.healthy = nil, false, false
	if healthy {
		s.breaker.Success()
	}
	s.mu.Unlock()
	p.Kill() // releases the connection and go-plugin's goroutines
	s.forgetPid(p.Pid())
	return ranJob, s.host.cfg.Now().Sub(started), true
}

// startRefresh asks instance p to describe itself every DeviceRefresh, on
// a goroutine of its own, and keeps the device of each answer (the rest of
// the description stays as the launch found it: the routes do not change
// under a running plugin). An answer that fails or comes late changes
// nothing; the instance's death is supervise's business. The returned
// function stops the goroutine and waits for it.
func (s *slot) startRefresh(ctx context.Context, p *plugins.Plugin) (stop func()) {
	every := s.host.cfg.DeviceRefresh
	if every < 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			dctx, dcancel := context.WithTimeout(ctx, s.host.cfg.StartTimeout)
			d, err := p.Describe(dctx)
			dcancel()
			if err != nil {
				if ctx.Err() == nil {
					s.host.log.Debug("device refresh failed", "plugin", s.name, "error", err)
				}
				continue
			}
			s.mu.Lock()
			if s.proc == p && s.desc != nil && s.desc.Device != d.Device {
				nd := *s.desc
				nd.Device = d.Device
				s.desc = &nd
			}
			s.mu.Unlock()
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

func (s *slot) forgetPid(pid int) {
	if s.host.cfg.Pids != nil && pid != 0 {
		s.host.cfg.Pids.Forget(pid)
	}
}

func (s *slot) stop() {
	s.mu.Lock()
	s.proc = nil
	s.setLocked(StateStopped)
	select {
	case <-s.servingCh:
	default:
		close(s.servingCh) // wakes Runs waiting for a restart
	}
	s.mu.Unlock()
	s.host.notify()
}

// launch starts a fresh process (a used go-plugin client cannot be
// restarted) and asks it to describe itself, both within StartTimeout.
func (s *slot) launch() (*plugins.Plugin, *plugins.Description, error) {
	cfg := s.host.cfg
	var pid atomic.Int64
	p, err := plugins.Launch(plugins.LaunchConfig{
		Path:         s.path,
		Env:          cfg.Env,
		Logger:       cfg.Logger,
		StartTimeout: cfg.StartTimeout,
		SHA256:       s.pin,
		Started: func(n int) {
			pid.Store(int64(n))
			if cfg.Pids != nil {
				cfg.Pids.Record(n)
			}
		},
	})
	if err != nil {
		s.forgetPid(int(pid.Load())) // Launch left nothing behind
		return nil, nil, err
	}
	fail := func(err error) (*plugins.Plugin, *plugins.Description, error) {
		p.Kill()
		s.forgetPid(p.Pid())
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.StartTimeout)
	defer cancel()
	d, err := p.Describe(ctx)
	if err != nil {
		return fail(fmt.Errorf("describe within %s: %w", cfg.StartTimeout, err))
	}
	if err := checkDescription(d); err != nil {
		return fail(fmt.Errorf("plugin %s refused: %w", s.name, err))
	}
	return p, d, nil
}

// checkDescription refuses a Describe answer the host cannot trust: another
// contract version, no engine id, a task kind the studio does not know, or
// models for kinds the plugin does not serve.
func checkDescription(d *plugins.Description) error {
	if d.ContractVersion != plugins.ContractVersion {
		return fmt.Errorf("it speaks contract v%d, this supervisor v%d", d.ContractVersion, plugins.ContractVersion)
	}
	if len(d.Engines) == 0 || slices.Contains(d.Engines, "") {
		return fmt.Errorf("it names no engine id (%q)", d.Engines)
	}
	served := map[plugins.TaskKind]bool{}
	for _, k := range d.Kinds {
		if !slices.Contains(plugins.AllKinds, k) {
			return fmt.Errorf("it claims unknown task kind %q", k)
		}
		served[k] = true
	}
	for k := range d.Models {
		if !served[k] {
			return fmt.Errorf("it advertises models for kind %q, which it does not serve", k)
		}
	}
	return nil
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
