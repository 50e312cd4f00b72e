package localjobs

import (
	"errors"
	"time"

	"github.com/stokerhq/stoker/supervisor/internal/jobslot"
	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

// State is where a local job stands.
type State string

// The states.
const (
	StateQueued    State = "queued"
	StateRunning   State = "running"
	StateCompleted State = "completed"
	StateFailed    State = "failed"
)

// Job is one local job as GET /jobs lists it.
type Job struct {
	ID       string            `json:"id"`
	Model    string            `json:"model"`
	Kind     protocol.TaskKind `json:"kind"`
	State    State             `json:"state"`
	Created  time.Time         `json:"created"`
	Started  time.Time         `json:"started,omitzero"`
	Finished time.Time         `json:"finished,omitzero"`
	// Error is the failure's message, and Code its code ("" unless
	// failed).
	Error string `json:"error,omitempty"`
	Code  Code   `json:"code,omitempty"`
}

// Totals count local jobs since the agent started, apart from the
// studio's.
type Totals struct {
	// Completed and Failed jobs ran; Refused ones never ran (an unknown
	// model, a full queue, an engine not there, the client gone while it
	// waited).
	Completed, Failed, Refused uint64
	// RunSeconds is the time the jobs that ran held the slot, in all.
	RunSeconds float64
	// Running is 1 while a local job holds the slot, Waiting the requests
	// in the slot's queue.
	Running, Waiting int
}

// begin records a new job as queued.
func (s *Service) begin(id, model string, kind protocol.TaskKind) *Job {
	j := &Job{ID: id, Model: model, Kind: kind, State: StateQueued, Created: time.Now()}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recent = append(s.recent, j)
	return j
}

// update changes a job under the lock.
func (s *Service) update(j *Job, f func(*Job)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(j)
}

// finish records a job's outcome, counts it and trims the history.
func (s *Service) finish(j *Job, err error) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	j.Finished = now
	ran := !j.Started.IsZero()
	switch {
	case err == nil:
		j.State = StateCompleted
		s.totals.Completed++
	default:
		j.State, j.Error = StateFailed, err.Error()
		var e *Error
		if errors.As(err, &e) {
			j.Code = e.Code
		}
		if ran {
			s.totals.Failed++
		} else {
			s.totals.Refused++
		}
	}
	if ran {
		s.totals.RunSeconds += now.Sub(j.Started).Seconds()
	}
	s.trimLocked()
	if ran {
		s.log.Info("local job finished", "job", j.ID, "state", j.State, "elapsed_ms", now.Sub(j.Started).Milliseconds(), "error", j.Error)
	}
}

// trimLocked drops the oldest finished jobs past History.
func (s *Service) trimLocked() {
	finished := 0
	for _, j := range s.recent {
		if !j.Finished.IsZero() {
			finished++
		}
	}
	out := s.recent[:0]
	for _, j := range s.recent {
		if !j.Finished.IsZero() && finished > s.cfg.History {
			finished--
			continue
		}
		out = append(out, j)
	}
	clear(s.recent[len(out):])
	s.recent = out
}

// Recent returns the recent local jobs, newest first.
func (s *Service) Recent() []Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Job, 0, len(s.recent))
	for i := len(s.recent) - 1; i >= 0; i-- {
		out = append(out, *s.recent[i])
	}
	return out
}

// Totals returns the totals now.
func (s *Service) Totals() Totals {
	s.mu.Lock()
	t := s.totals
	s.mu.Unlock()
	st := s.cfg.Slot.State()
	if st.Holder == jobslot.Local {
		t.Running = 1
	}
	t.Waiting = st.Waiting
	return t
}
