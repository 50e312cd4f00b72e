package agent

import (
	"context"
	"encoding/json"
	"io"
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
			ID: cur.JobID, Model: cur.Model, Engine: cur.Engine, Kind: string(cur.Kind), Phase: cur.Phase,
			Step: cur.Step, Total: cur.Total, Unit: cur.Unit, Started: cur.Started, LastProgress: cur.Progress,
		}
	}
	for _, p := range s.a.host.Status() {
		lp := localapi.Plugin{
			Name: p.Name, Path: p.Path, State: string(p.State), Since: p.Since, Pid: p.Pid,
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

// countingRunner counts each job's outcome and each refused offer for the
// local API.
type countingRunner struct {
	inner studio.JobRunner
	tally *localapi.Tally
}

var _ studio.JobRunner = countingRunner{}

func (c countingRunner) Admit(claim *protocol.JobOfferClaim) error {
	err := c.inner.Admit(claim)
	if err != nil {
		c.tally.Rejected()
	}
	return err
}

// RunJob runs the job and records its duration by kind, engine and
// outcome (a job whose outcome was never delivered is not recorded).
func (c countingRunner) RunJob(ctx context.Context, claim *protocol.JobOfferClaim, rep studio.Reporter) {
	start := time.Now()
	cr := &countingReporter{Reporter: rep, tally: c.tally}
	c.inner.RunJob(ctx, claim, cr)
	if cr.outcome != "" {
		kind, engine := "", ""
		if claim.Task != nil {
			kind = string(claim.Task.Kind)
		}
		if claim.ModelSource != nil {
			engine = claim.ModelSource.Engine
		}
		c.tally.JobDone(kind, engine, cr.outcome, time.Since(start))
	}
}

// countingReporter counts the outcomes it delivers, and keeps the last
// one for RunJob.
type countingReporter struct {
	studio.Reporter
	tally   *localapi.Tally
	outcome string
}

func (r *countingReporter) CompleteJSON(ctx context.Context, result json.RawMessage, prompt string) error {
	err := r.Reporter.CompleteJSON(ctx, result, prompt)
	if err == nil {
		r.tally.Completed()
		r.outcome = localapi.OutcomeCompleted
	}
	return err
}

func (r *countingReporter) Upload(ctx context.Context, ext, prompt string, open func() (io.ReadCloser, error)) error {
	err := r.Reporter.Upload(ctx, ext, prompt, func() (io.ReadCloser, error) {
		rc, err := open()
		if err != nil {
			return nil, err
		}
		return &countingReader{ReadCloser: rc, tally: r.tally}, nil
	})
	if err == nil {
		r.tally.Completed()
		r.outcome = localapi.OutcomeCompleted
	}
	return err
}

func (r *countingReporter) Fail(ctx context.Context, message string, retryable bool) error {
	err := r.Reporter.Fail(ctx, message, retryable)
	if err == nil {
		r.tally.Failed(retryable)
		r.outcome = localapi.OutcomeFailedFinal
		if retryable {
			r.outcome = localapi.OutcomeFailedRetryable
		}
	}
	return err
}

type countingReader struct {
	io.ReadCloser
	tally *localapi.Tally
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.tally.Uploaded(int64(n))
	return n, err
}
