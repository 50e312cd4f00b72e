package devstudio

import (
	"encoding/json"
	"time"

	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

// JobStatus is the studio-side state of a job.
type JobStatus string

// Job states.
const (
	JobQueued    JobStatus = "queued"
	JobOffered   JobStatus = "offered"
	JobRunning   JobStatus = "running"
	JobCompleted JobStatus = "completed"
	JobFailed    JobStatus = "failed"
)

// Done reports whether the job reached a terminal state.
func (s JobStatus) Done() bool { return s == JobCompleted || s == JobFailed }

// job is the server's record of one job; guarded by Server.mu.
type job struct {
	id       string
	seq      int
	model    string
	task     protocol.Task
	source   protocol.ModelSource
	vram     float32
	status   JobStatus
	attempts int
	// holder is the session the job is offered to or running on; nil
	// otherwise. worker is the holder's worker, or the last one that held
	// the job.
	holder     *session
	worker     string
	rejectedBy map[string]bool
	errMsg     string
	retryable  bool
	result     json.RawMessage
	resultPath string
	resultExt  string
	resultSHA  string
	resultSize int64
	prompt     string
	uploads    int // upload attempts seen, for Hooks.UploadStatus
	created    time.Time
	updated    time.Time
	// offered is when the last offer of the job was written to the
	// worker's socket, reported when its outcome was read (completeJson,
	// fail) or its upload stored: between them is the worker's part of
	// the round trip, the studio's own work outside it.
	offered, reported time.Time
	offerSeq          int // offers made, so a late write time is not another offer's
}

// JobView is a snapshot of a job, as the JSON API returns it.
type JobView struct {
	ID       string    `json:"id"`
	Model    string    `json:"model"`
	Kind     string    `json:"kind"`
	Status   JobStatus `json:"status"`
	Attempts int       `json:"attempts"`
	Worker   string    `json:"worker,omitempty"`
	Error    string    `json:"error,omitempty"`
	// Retryable is the retryable flag of the last fail.
	Retryable bool `json:"retryable,omitempty"`
	// Result is the completeJson result (llm, audio_stt).
	Result json.RawMessage `json:"result,omitempty"`
	// ResultURL serves a binary result with its Content-Type.
	ResultURL    string    `json:"resultUrl,omitempty"`
	ResultExt    string    `json:"resultExt,omitempty"`
	ResultSHA256 string    `json:"resultSha256,omitempty"`
	ResultBytes  int64     `json:"resultBytes,omitempty"`
	Prompt       string    `json:"prompt,omitempty"`
	CreatedAt    time.Time `json:"createdAt"`
	UpdatedAt    time.Time `json:"updatedAt"`
	// OfferedAt is when the last offer was written to the worker's
	// socket, ReportedAt when the studio read its outcome (or stored its
	// upload): ReportedAt - OfferedAt is the worker's share of a round
	// trip, the rest the studio's (the benchmarks report both).
	OfferedAt  time.Time `json:"offeredAt,omitzero"`
	ReportedAt time.Time `json:"reportedAt,omitzero"`
}

func (s *Server) viewLocked(j *job) JobView {
	v := JobView{
		ID: j.id, Model: j.model, Kind: string(j.task.Kind), Status: j.status, Attempts: j.attempts,
		Worker: j.worker, Error: j.errMsg, Retryable: j.retryable, Result: j.result,
		ResultExt: j.resultExt, ResultSHA256: j.resultSHA, ResultBytes: j.resultSize,
		Prompt: j.prompt, CreatedAt: j.created, UpdatedAt: j.updated,
		OfferedAt: j.offered, ReportedAt: j.reported,
	}
	if j.resultPath != "" {
		v.ResultURL = s.baseURL + "/api/jobs/" + j.id + "/result"
	}
	return v
}

// worker is an approved worker; guarded by Server.mu.
type worker struct {
	id        string
	tokenHash string // hex sha256 of the current auth token
	caps      protocol.WorkerCapabilities
	hasCaps   bool
	session   *session // the welcomed session, nil when none
	lastBeat  time.Time
	logs      []protocol.LogEntry // ring, oldest first
	logCount  int                 // entries ever received
	// holdOffers is set by a busy/paused reject and cleared by the next
	// heartbeat: no immediate re-offer to that worker.
	holdOffers bool
	welcomes   int // sessions welcomed so far
}

// WorkerView is a snapshot of a worker.
type WorkerView struct {
	ID            string                       `json:"id"`
	Connected     bool                         `json:"connected"`
	Capabilities  *protocol.WorkerCapabilities `json:"capabilities,omitempty"`
	CurrentJobID  string                       `json:"currentJobId,omitempty"`
	LastHeartbeat time.Time                    `json:"lastHeartbeat,omitzero"`
	ConnectedAt   time.Time                    `json:"connectedAt,omitzero"`
	LogCount      int                          `json:"logCount"`
	// Sessions counts the sessions welcomed for this worker so far.
	Sessions int `json:"sessions"`
}

func (w *worker) viewLocked() WorkerView {
	v := WorkerView{ID: w.id, LastHeartbeat: w.lastBeat, LogCount: w.logCount, Sessions: w.welcomes}
	if w.hasCaps {
		c := w.caps
		v.Capabilities = &c
	}
	if w.session != nil {
		v.Connected = true
		v.ConnectedAt = w.session.connectedAt
		if w.session.job != nil {
			v.CurrentJobID = w.session.job.id
		}
	}
	return v
}

func (w *worker) addLogsLocked(entries []protocol.LogEntry, ring int) {
	w.logCount += len(entries)
	w.logs = append(w.logs, entries...)
	if over := len(w.logs) - ring; over > 0 {
		w.logs = append([]protocol.LogEntry(nil), w.logs[over:]...)
	}
}

// Stats counts what the studio received from workers since it started,
// for a load run against `stoker studio`, which has no hooks
// (scripts/fleet.sh): every accepted attempt should end in exactly one
// outcome.
type Stats struct {
	// Accepts counts accept frames for a job offered to that session.
	Accepts int `json:"accepts"`
	// Outcomes counts completeJson and fail frames, and stored uploads,
	// for a job the worker held.
	Outcomes int `json:"outcomes"`
	// Stray counts outcomes (frames or uploads) for a job the worker no
	// longer held: a duplicate, or one that came after its job was
	// released to another worker.
	Stray int `json:"stray"`
}

// Stats returns the counts now (GET /api/stats).
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}
