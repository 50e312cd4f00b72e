package stresscrash

import (
	"sync"
	"time"

	"github.com/stokerhq/stoker/supervisor/internal/devstudio"
)

// Frames records, per job, the frames the studio received, through the dev
// studio's Drop hook (which never drops anything here).
type Frames struct {
	// Job, if set, looks a job up in the studio: the hook has no payload,
	// so a fail's message is read from the job when its next attempt is
	// accepted (and from the final view by Finish).
	Job func(id string) (devstudio.JobView, bool)

	mu   sync.Mutex // guards jobs
	jobs map[string][]Frame
}

// Frame is one received frame.
type Frame struct {
	Point   devstudio.Point
	At      time.Time
	Message string // a fail's message, once known
}

// Hook is a devstudio Hooks.Drop that records and keeps every frame.
func (f *Frames) Hook(_ string, p devstudio.Point, jobID string) bool {
	if jobID == "" {
		return false
	}
	switch p {
	case devstudio.PointAccept, devstudio.PointFail, devstudio.PointCompleteJSON, devstudio.PointUploadStart, devstudio.PointReject:
	default:
		return false
	}
	now := time.Now()
	msg := ""
	if (p == devstudio.PointAccept || p == devstudio.PointReject) && f.Job != nil {
		if v, ok := f.Job(jobID); ok {
			msg = v.Error // the previous attempt's fail, if any (a reject replaces it)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.jobs == nil {
		f.jobs = map[string][]Frame{}
	}
	fs := f.jobs[jobID]
	if n := len(fs); n > 0 && fs[n-1].Point == devstudio.PointFail && fs[n-1].Message == "" {
		fs[n-1].Message = msg
	}
	f.jobs[jobID] = append(fs, Frame{Point: p, At: now})
	return false
}

// Finish fills in the message of each job's last fail from the final job
// views.
func (f *Frames) Finish(views []devstudio.JobView) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, v := range views {
		fs := f.jobs[v.ID]
		if n := len(fs); n > 0 && fs[n-1].Point == devstudio.PointFail && fs[n-1].Message == "" {
			fs[n-1].Message = v.Error
		}
	}
}

// Add records a frame (for tests and replays).
func (f *Frames) Add(jobID string, p devstudio.Point, at time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.jobs == nil {
		f.jobs = map[string][]Frame{}
	}
	f.jobs[jobID] = append(f.jobs[jobID], Frame{Point: p, At: at})
}

// Attempts counts attempts (accepts) and, among them, those with no
// outcome frame before the next accept (lost) and those with more than one
// (duplicates; each extra outcome counts once).
func (f *Frames) Attempts() (attempts, lost, duplicates int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, frames := range f.jobs {
		outcomes := -1 // no attempt open
		closeAttempt := func() {
			switch {
			case outcomes == 0:
				lost++
			case outcomes > 1:
				duplicates += outcomes - 1
			}
		}
		for _, fr := range frames {
			if fr.Point == devstudio.PointReject {
				continue // an offer refused: no attempt, no outcome
			}
			if fr.Point == devstudio.PointAccept {
				if outcomes >= 0 {
					closeAttempt()
				}
				attempts++
				outcomes = 0
				continue
			}
			if outcomes < 0 {
				duplicates++ // an outcome with no attempt open
				continue
			}
			outcomes++
		}
		if outcomes >= 0 {
			closeAttempt()
		}
	}
	return attempts, lost, duplicates
}

// Fail is a received fail frame with the message the studio recorded.
type Fail struct {
	JobID   string
	At      time.Time
	Message string
}

// Fails returns every fail frame received, with its message where known.
func (f *Frames) Fails() []Fail {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Fail
	for id, fs := range f.jobs {
		for _, fr := range fs {
			if fr.Point == devstudio.PointFail {
				out = append(out, Fail{JobID: id, At: fr.At, Message: fr.Message})
			}
		}
	}
	return out
}
