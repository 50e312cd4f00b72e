package agent

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"

	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/supervisor/internal/engines"
	"github.com/stokerhq/stoker/supervisor/internal/imageapi"
	"github.com/stokerhq/stoker/supervisor/internal/jobs"
	"github.com/stokerhq/stoker/supervisor/internal/jobslot"
	"github.com/stokerhq/stoker/supervisor/internal/localapi"
	"github.com/stokerhq/stoker/supervisor/internal/localjobs"
	"github.com/stokerhq/stoker/supervisor/internal/localmodels"
	"github.com/stokerhq/stoker/supervisor/internal/openaiapi"
	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

// This file wires the local jobs (package localjobs) to the job runner,
// the engine host and the node's job slot, and their routes (packages
// imageapi and openaiapi) onto the local API.

// localInputDir is where local jobs' uploads and results are spooled, in
// the state dir; the model store allows file:// inputs inside it.
func localInputDir(stateDir string) string { return filepath.Join(stateDir, "local-jobs") }

// startLocalJobs opens the local model catalog (seeded with the default
// models when new; extra, the -dev models, put in at every start) and
// returns the service and its routes.
func (a *Agent) startLocalJobs(slot *jobslot.Slot, extra []localmodels.Model) (*localjobs.Service, []localapi.Route, error) {
	cat, err := localmodels.Open(filepath.Join(a.cfg.StateDir, localmodels.FileName), localmodels.DefaultModels())
	if err != nil {
		return nil, nil, err
	}
	for _, m := range extra {
		if err := cat.Put(m); err != nil {
			return nil, nil, fmt.Errorf("local model %s: %w", m.ID, err)
		}
	}
	svc, err := localjobs.New(localjobs.Config{
		Models:   cat,
		Runner:   localRunner{a.runner},
		Slot:     slot,
		Serves:   a.serves,
		InputDir: localInputDir(a.cfg.StateDir),
		Logger:   a.log,
	})
	if err != nil {
		return nil, nil, err
	}
	oa, err := openaiapi.New(svc, filepath.Join(localInputDir(a.cfg.StateDir), "images"))
	if err != nil {
		svc.Close()
		return nil, nil, err
	}
	var routes []localapi.Route
	for _, r := range slices.Concat(imageapi.New(svc, a.cfg.LocalDefaultModel).Routes(), oa.Routes()) {
		access := localapi.ReadAccess
		if r.Job {
			access = localapi.JobAccess
		}
		routes = append(routes, localapi.Route{Pattern: r.Pattern, Handler: r.Handler, Access: access})
	}
	return svc, routes, nil
}

// serves says whether a ready plugin runs kind on engine now.
func (a *Agent) serves(engine string, kind protocol.TaskKind) localjobs.Availability {
	found := false
	for _, st := range a.host.Status() {
		d := st.Description
		if d == nil || !slices.Contains(d.Engines, engine) {
			continue
		}
		found = true
		if st.State == engines.StateReady && d.Ready && slices.Contains(d.Kinds, plugins.TaskKind(kind)) {
			return localjobs.Available
		}
	}
	if !found {
		return localjobs.NoEngine
	}
	// A plugin for the engine is there: it serves other kinds, or is not
	// ready now.
	for _, st := range a.host.Status() {
		if d := st.Description; d != nil && slices.Contains(d.Engines, engine) && slices.Contains(d.Kinds, plugins.TaskKind(kind)) {
			return localjobs.NoEngine
		}
	}
	return localjobs.WrongKind
}

// localRunner runs local jobs on the job runner.
type localRunner struct{ r *jobs.Runner }

var _ localjobs.Runner = localRunner{}

func (l localRunner) Admit(claim *protocol.JobOfferClaim) error { return l.r.Admit(claim) }

func (l localRunner) RunJob(ctx context.Context, claim *protocol.JobOfferClaim, rep localjobs.Reporter) {
	l.r.RunJob(ctx, claim, rep)
}

// studioSlot is the node's slot as the studio session takes it.
type studioSlot struct{ s *jobslot.Slot }

func (s studioSlot) TryAcquire() bool { return s.s.TryAcquire(jobslot.Studio) }
func (s studioSlot) Release()         { s.s.Release() }
