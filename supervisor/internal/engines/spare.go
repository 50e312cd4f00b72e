package engines

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/stokerhq/stoker/plugins"
)

// spare is a slot's warm spare: a second instance of the plugin, started,
// handshaken and described like any launch (the same trust checks and
// pin), its Jobs stream open, idle. When the serving instance dies and the
// relaunch would be immediate, supervise swaps the spare in at once
// instead of starting a process, then starts the next spare. It is no
// serving plugin until swapped: no route, no offerings, no Pid in the
// status (SparePid names it). Its cost is one idle process per plugin: its
// resident memory without a model (docs/crash-isolation.md gives figures).
//
// A spare belongs to its slot's supervise goroutine, which alone calls its
// methods; its launches run on one goroutine at a time, which close waits
// for.
type spare struct {
	s   *slot
	log hclog.Logger

	p *plugins.Plugin      // the idle spare, or nil
	d *plugins.Description // its description

	launching chan launched // non-nil while a launch runs; its result
	gen       int           // bumped by discard: a launch of an older one is killed on landing
	launchGen int           // gen when the running launch began
	wg        sync.WaitGroup

	deaths int         // spares dead or failed to start since one was swapped in
	retry  *time.Timer // armed while the next launch waits out a backoff
	retryC <-chan time.Time
}

// launched is the outcome of a spare's launch.
type launched struct {
	p   *plugins.Plugin
	d   *plugins.Description
	err error
}

// want starts a launch unless a spare is idle or coming, or a backoff is
// being waited out.
func (sp *spare) want() {
	if sp.p != nil || sp.launching != nil || sp.retryC != nil {
		return
	}
	ch := make(chan launched, 1)
	sp.launching, sp.launchGen = ch, sp.gen
	sp.wg.Add(1)
	go func() {
		defer sp.wg.Done()
		p, d, err := sp.s.launch()
		ch <- launched{p, d, err}
	}()
}

// landedC receives the running launch's outcome (nil channel when none).
func (sp *spare) landedC() <-chan launched { return sp.launching }

// exitedC is closed when the idle spare dies (nil channel when none).
func (sp *spare) exitedC() <-chan struct{} {
	if sp.p == nil {
		return nil
	}
	return sp.p.Exited()
}

// retryDue receives when a backoff before the next launch ends.
func (sp *spare) retryDue() <-chan time.Time { return sp.retryC }

// retried clears the backoff that ended.
func (sp *spare) retried() { sp.retryC, sp.retry = nil, nil }

// landed takes a launch's outcome.
func (sp *spare) landed(r launched) {
	stale := sp.launchGen != sp.gen
	sp.launching = nil
	switch {
	case r.err != nil:
		sp.log.Warn("spare failed to start", "error", r.err)
		sp.failed()
	case stale:
		sp.kill(r.p)
	default:
		sp.p, sp.d = r.p, r.d
		sp.s.setSparePid(r.p.Pid())
		sp.log.Debug("spare ready", "pid", r.p.Pid())
	}
}

// died deals with the idle spare's death: a plugin dying at idle, whose
// next spare waits out a backoff that grows with each one.
func (sp *spare) died() {
	p := sp.p
	sp.p, sp.d = nil, nil
	sp.s.setSparePid(0)
	sp.log.Warn("spare died at idle", "pid", p.Pid(), "status", p.ExitStatus().String(), "stderr_tail", p.StderrTail())
	sp.kill(p)
	sp.s.countSpareDeath()
	sp.failed()
}

// failed arms the backoff before the next launch.
func (sp *spare) failed() {
	sp.deaths++
	d := sp.s.host.cfg.Restart.Delay(sp.deaths)
	sp.retry = time.NewTimer(d)
	sp.retryC = sp.retry.C
}

// take hands over the idle spare, if it is alive, for swapping in; a dead
// one is dealt with as such. A spare still starting is waited for (until
// ctx ends): it is further along than a launch begun now would be, and a
// second launch beside it would only slow both on a busy machine.
func (sp *spare) take(ctx context.Context) (*plugins.Plugin, *plugins.Description, bool) {
	if sp.p == nil && sp.launching != nil {
		select {
		case r := <-sp.launching:
			sp.landed(r)
		case <-ctx.Done():
			return nil, nil, false
		}
	}
	if sp.p == nil {
		return nil, nil, false
	}
	select {
	case <-sp.p.Exited():
		sp.died()
		return nil, nil, false
	default:
	}
	p, d := sp.p, sp.d
	sp.p, sp.d, sp.deaths = nil, nil, 0
	sp.s.setSparePid(0)
	return p, d, true
}

// discard kills the idle spare and makes a launch running now land dead:
// the slot is not to serve soon (quarantine, a backoff), and a spare
// started before that must not serve after it.
func (sp *spare) discard() {
	sp.gen++
	if sp.p != nil {
		sp.kill(sp.p)
		sp.p, sp.d = nil, nil
		sp.s.setSparePid(0)
	}
	if sp.retry != nil {
		sp.retry.Stop()
		sp.retried()
	}
	sp.deaths = 0
}

// close kills the spare and waits for a running launch, whose process it
// kills too. It may be called more than once.
func (sp *spare) close() {
	sp.discard()
	sp.wg.Wait()
	if sp.launching != nil {
		r := <-sp.launching
		sp.launching = nil
		if r.err == nil {
			sp.kill(r.p)
		}
	}
}

func (sp *spare) kill(p *plugins.Plugin) {
	p.Kill()
	sp.s.forgetPid(p.Pid())
}
