package devstudio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

// ErrUnknownModel is returned by Submit for a model id not in the catalog.
var ErrUnknownModel = errors.New("unknown model")

// ErrUnknownJob is returned by WaitJob for a job id the server never issued.
var ErrUnknownJob = errors.New("unknown job")

// Submit queues a job for model with the given task JSON (spec §6.2,
// kind-tagged) and returns its id ("job-<n>"). The task is validated with
// the protocol package; an unknown model wraps ErrUnknownModel. The job is
// offered at once if a worker is eligible.
func (s *Server) Submit(model string, task json.RawMessage) (string, error) {
	entry, ok := s.catalog.Get(model)
	if !ok {
		return "", fmt.Errorf("submit: %w %q", ErrUnknownModel, model)
	}
	var t protocol.Task
	if err := json.Unmarshal(task, &t); err != nil {
		return "", fmt.Errorf("submit: %w", err)
	}
	if err := t.Validate(); err != nil {
		return "", fmt.Errorf("submit: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return "", errors.New("submit: server closed")
	}
	s.nextJob++
	now := time.Now()
	j := &job{
		id: fmt.Sprintf("job-%d", s.nextJob), seq: s.nextJob, model: model, task: t,
		source: entry.Source, vram: entry.VramGbEstimate, status: JobQueued,
		rejectedBy: map[string]bool{}, created: now, updated: now,
	}
	s.jobs[j.id] = j
	s.order = append(s.order, j)
	s.dispatchLocked()
	s.notifyLocked()
	return j.id, nil
}

// Job returns a snapshot of job id.
func (s *Server) Job(id string) (JobView, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[id]
	if !ok {
		return JobView{}, false
	}
	return s.viewLocked(j), true
}

// Jobs returns snapshots of every job in submission order.
func (s *Server) Jobs() []JobView {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]JobView, 0, len(s.order))
	for _, j := range s.order {
		out = append(out, s.viewLocked(j))
	}
	return out
}

// WaitJob blocks until cond holds for job id, ctx ends, or the server
// closes, and returns the last snapshot seen. It wakes on every state
// change (no polling).
func (s *Server) WaitJob(ctx context.Context, id string, cond func(JobView) bool) (JobView, error) {
	for {
		s.mu.Lock()
		j, ok := s.jobs[id]
		var v JobView
		if ok {
			v = s.viewLocked(j)
		}
		ch, closed := s.changed, s.closed
		s.mu.Unlock()
		if !ok {
			return v, fmt.Errorf("wait job: %w %q", ErrUnknownJob, id)
		}
		if cond(v) {
			return v, nil
		}
		if closed {
			return v, errors.New("wait job: server closed")
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return v, fmt.Errorf("wait job %s (status %s): %w", id, v.Status, ctx.Err())
		}
	}
}

// WaitWorker blocks until cond holds for worker id (which may not exist
// yet: cond then sees a WorkerView with only the ID set), ctx ends, or the
// server closes.
func (s *Server) WaitWorker(ctx context.Context, id string, cond func(WorkerView) bool) (WorkerView, error) {
	for {
		s.mu.Lock()
		v := WorkerView{ID: id}
		if w, ok := s.workers[id]; ok {
			v = w.viewLocked()
		}
		ch, closed := s.changed, s.closed
		s.mu.Unlock()
		if cond(v) {
			return v, nil
		}
		if closed {
			return v, errors.New("wait worker: server closed")
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return v, fmt.Errorf("wait worker %s: %w", id, ctx.Err())
		}
	}
}

// WaitConnected blocks until worker id has a welcomed session (see
// WaitWorker) and returns its snapshot.
func (s *Server) WaitConnected(ctx context.Context, id string) (WorkerView, error) {
	return s.WaitWorker(ctx, id, func(v WorkerView) bool { return v.Connected })
}

// Changed returns a channel closed at the next state change of the server
// (a job, worker, session or registration changed). Take a snapshot after
// receiving it, and call Changed again for the next one.
func (s *Server) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// unholdLocked detaches j from its session.
func (s *Server) unholdLocked(j *job) {
	if j.holder != nil {
		if j.holder.job == j {
			j.holder.job = nil
		}
		j.holder = nil
	}
}

// releaseLocked takes j back from its session. With countAttempt it counts
// an attempt and fails the job with reason once MaxAttempts is reached;
// otherwise (and below the limit) it is queued again.
func (s *Server) releaseLocked(j *job, reason string, countAttempt bool) {
	s.unholdLocked(j)
	j.updated = time.Now()
	if reason != "" {
		j.errMsg = reason
	}
	if countAttempt {
		j.attempts++
		if j.attempts >= s.cfg.MaxAttempts {
			j.status = JobFailed
			return
		}
	}
	j.status = JobQueued
}

// eligibleLocked reports whether session ss may be offered j (§8.1
// selection): a welcomed, current session with nothing held, a worker that
// is not paused, serves the kind, has the VRAM threshold, has not rejected
// this job, is not holding offers after a busy/paused reject, and for
// onlyWhenIdle workers reported presence idle.
func (s *Server) eligibleLocked(ss *session, j *job) bool {
	if !ss.welcomed || ss.closing || ss.ended || ss.job != nil {
		return false
	}
	w := s.workers[ss.workerID]
	if w == nil || w.session != ss || w.holdOffers || !w.hasCaps || j.rejectedBy[w.id] {
		return false
	}
	c := &w.caps
	if !c.AutoEnabled || !c.Serves(j.task.Kind) || c.VramThresholdGb < j.vram {
		return false
	}
	return !c.OnlyWhenIdle || c.UserPresence == protocol.PresenceIdle
}

// dispatchLocked offers queued jobs, oldest first, each to the
// earliest-connected eligible session.
func (s *Server) dispatchLocked() {
	s.advanceHeadLocked()
	if s.closed || s.head == len(s.order) {
		return
	}
	var cands []*session
	for ss := range s.sessions {
		if ss.welcomed && ss.job == nil && !ss.closing {
			cands = append(cands, ss)
		}
	}
	if len(cands) == 0 {
		return
	}
	sort.Slice(cands, func(a, b int) bool {
		if !cands[a].connectedAt.Equal(cands[b].connectedAt) {
			return cands[a].connectedAt.Before(cands[b].connectedAt)
		}
		return cands[a].id < cands[b].id
	})
	for _, j := range s.order[s.head:] {
		if j.status != JobQueued {
			continue
		}
		for _, ss := range cands {
			if s.eligibleLocked(ss, j) {
				s.offerLocked(ss, j)
				break
			}
		}
	}
}

// advanceHeadLocked moves s.head past the done jobs at the front of
// s.order (done jobs never run again), so dispatch skips history.
func (s *Server) advanceHeadLocked() {
	for s.head < len(s.order) && s.order[s.head].status.Done() {
		s.head++
	}
}

func (s *Server) claimLocked(j *job) protocol.JobOfferClaim {
	task, src := j.task, j.source
	return protocol.JobOfferClaim{
		JobID: j.id, GameID: "dev", AssetName: "dev/" + j.id, Model: j.model,
		VramGbEstimate: j.vram, Task: &task, ModelSource: &src,
	}
}

func (s *Server) offerLocked(ss *session, j *job) {
	j.status, j.holder, j.worker, j.updated = JobOffered, ss, ss.workerID, time.Now()
	ss.job = j
	b, err := protocol.Encode(protocol.Offer{Claim: s.claimLocked(j)})
	if err != nil {
		s.log.Error("encode frame", "type", "offer", "error", err)
		return
	}
	j.offerSeq++
	seq := j.offerSeq
	ss.pushLocked(outMsg{kind: outText, data: b, sending: func(at time.Time) {
		s.mu.Lock()
		if j.offerSeq == seq {
			j.offered = at
		}
		s.mu.Unlock()
	}})
	s.log.Debug("offered job", "job", j.id, "worker", ss.workerID)
}
