package agent

import (
	"context"
	"slices"
	"sync/atomic"
	"time"

	"github.com/stokerhq/stoker/supervisor/internal/localapi"
	"github.com/stokerhq/stoker/supervisor/internal/protocol"
	"github.com/stokerhq/stoker/supervisor/internal/studio"
)

// This file adapts the agent's parts to the local API's own view of them
// (package localapi imports none of them).

// status is the agent's localapi.Source and localapi.Controls.
type status struct {
	a       *Agent
	started time.Time
	tally   *localapi.Tally
	client  atomic.Pointer[studio.Client] // nil until registration is done
	paused  atomic.Bool                   // asked for before the client exists
}

var (
	_ localapi.Source         = (*status)(nil)
	_ localapi.Controls       = (*status)(nil)
	_ localapi.ResidentSource = (*status)(nil)
)

func (s *status) setClient(c *studio.Client) {
	c.SetPaused(s.paused.Load())
	s.client.Store(c)
}

func (s *status) SetPaused(p bool) {
	s.paused.Store(p)
	if c := s.client.Load(); c != nil {
		c.SetPaused(p)
	}
}

func (s *status) Paused() bool {
	if c := s.client.Load(); c != nil {
		return c.Paused()
	}
	return s.paused.Load()
}

// Snapshot copies what the page shows; every part copies under its own lock.
func (s *status) Snapshot() localapi.Snapshot {
	snap := localapi.Snapshot{Version: Version, Started: s.started, Counters: s.tally.Counters()}
	if c := s.client.Load(); c != nil {
		st := c.Status()
		snap.Counters.Jobs.Rejected = st.OffersRefused
		snap.Session = localapi.Session{
			State: st.State.String(), Since: st.Since, Connected: st.Connected, Welcomed: st.Welcomed,
			WorkerID: st.WorkerID, Attempt: st.Attempt, NextAttempt: st.NextAttempt, LastError: st.LastError,
			ServerTime: st.ServerTime, CurrentJobID: st.CurrentJobID, Paused: st.Paused, Sessions: st.Sessions,
		}
	} else {
		snap.Session = localapi.Session{State: "registering", Paused: s.paused.Load()}
	}
	if cur, ok := s.a.runner.Current(); ok {
		snap.Job = &localapi.Job{
			ID: cur.JobID, Source: string(s.a.slot.State().Holder), Model: cur.Model, Engine: cur.Engine, Kind: string(cur.Kind), Phase: cur.Phase,
			Step: cur.Step, Total: cur.Total, Unit: cur.Unit, Started: cur.Started, LastProgress: cur.Progress,
		}
	}
	for _, p := range s.a.host.Status() {
		lp := localapi.Plugin{
			Name: p.Name, Path: p.Path, State: string(p.State), Since: p.Since, Pid: p.Pid, SparePid: p.SparePid,
			Restarts: p.Restarts, Crashes: p.Crashes, LastError: p.LastError,
			QuarantinedUntil: p.QuarantinedUntil, LastExit: p.LastExit, LastExitStatus: p.LastExitStatus,
		}
		if d := p.Description; d != nil {
			lp.Version, lp.Engines, lp.Ready = d.Version, d.Engines, d.Ready
			for _, k := range d.Kinds {
				lp.Kinds = append(lp.Kinds, string(k))
			}
			lp.Device = localapi.Device{Backend: d.Device.Backend, Name: d.Device.Name, MemoryTotal: d.Device.MemoryTotal, MemoryFree: d.Device.MemoryFree}
		}
		snap.Counters.PluginRestarts += uint64(p.Restarts)
		snap.Plugins = append(snap.Plugins, lp)
	}
	if svc := s.a.local; svc != nil {
		t, st := svc.Totals(), s.a.slot.State()
		snap.Local = &localapi.LocalJobs{
			Running: t.Running, Waiting: t.Waiting, MaxWaiting: st.MaxWaiting,
			Completed: t.Completed, Failed: t.Failed, Refused: t.Refused, RunSeconds: t.RunSeconds,
		}
	}
	caps := s.a.Capabilities()
	snap.Advertised.Models = map[string][]string{}
	for _, k := range caps.TaskKinds {
		snap.Advertised.Kinds = append(snap.Advertised.Kinds, string(k))
		snap.Advertised.Models[string(k)] = caps.SupportedModelsPerKind[k]
	}
	slices.Sort(snap.Advertised.Kinds)
	return snap
}

// Resident asks the plugins what they hold in memory.
func (s *status) Resident(ctx context.Context) []localapi.PluginResident {
	var out []localapi.PluginResident
	for _, p := range s.a.host.Resident(ctx) {
		lp := localapi.PluginResident{
			Name: p.Name, Path: p.Path, State: string(p.State), Error: p.Err,
			Device: localapi.Device{Backend: p.Device.Backend, Name: p.Device.Name, MemoryTotal: p.Device.MemoryTotal, MemoryFree: p.Device.MemoryFree},
		}
		for _, m := range p.Models {
			rm := localapi.ResidentModel{Model: m.Model, Bytes: m.Bytes}
			if m.LastUsedUnixMs > 0 {
				rm.LastUsed = time.UnixMilli(m.LastUsedUnixMs).UTC()
			}
			lp.Models = append(lp.Models, rm)
		}
		out = append(out, lp)
	}
	return out
}

// jobDone counts a studio job's outcome (studio.Config.JobDone).
func (s *status) jobDone(claim *protocol.JobOfferClaim, out studio.Outcome) {
	if !out.Reported {
		return // the studio requeues it; nothing was delivered
	}
	outcome := localapi.OutcomeCompleted
	switch {
	case out.Err != nil && out.Retryable:
		outcome = localapi.OutcomeFailedRetryable
	case out.Err != nil:
		outcome = localapi.OutcomeFailedFinal
	}
	s.tally.JobDone(string(claim.Task.Kind), claim.ModelSource.Engine, outcome, out.ResultBytes, out.Elapsed)
}
