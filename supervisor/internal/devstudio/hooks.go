package devstudio

import (
	"fmt"

	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

// Point names a moment in a worker's session where Hooks.Drop is consulted.
type Point string

// Hook points. The frame points are consulted when the frame arrives,
// before the studio processes it: a dropped frame is lost as if in transit.
const (
	PointHello        Point = "hello"
	PointHeartbeat    Point = "heartbeat"
	PointAccept       Point = "accept"
	PointReject       Point = "reject"
	PointCompleteJSON Point = "completeJson"
	PointFail         Point = "fail"
	PointLogBatch     Point = "logBatch"
	// PointUploadStart is consulted when an authorised, claimed upload
	// begins, before its body is read; the upload itself goes on.
	PointUploadStart Point = "uploadStart"
)

// Hooks inject faults so a test can hold or break a step instead of racing
// it (style habit 16). Every field is optional; hooks are called without
// the server's lock held and may block only where stated. The imperative
// faults are methods: SendError, SendRaw, SendOffer, DropWorker, SetSilent.
type Hooks struct {
	// HoldWelcome is called after a valid hello. A non-nil channel delays
	// the welcome until it is closed (never closing it withholds the
	// welcome for good); the session keeps reading meanwhile, so frames the
	// worker sends too early are protocol violations as usual.
	HoldWelcome func(workerID string) <-chan struct{}
	// Drop is consulted at each Point with the job id involved (if any);
	// returning true closes the worker's socket abruptly, without a close
	// frame.
	Drop func(workerID string, p Point, jobID string) bool
	// UploadStatus is consulted for each binary upload of an authorised,
	// claimed job, with attempt counting from 1 per job. A non-zero status
	// is answered instead of storing the result (the body is read and
	// discarded first); 0 means handle normally. E.g. 500 then 0 tests a
	// retry; 409 a lost claim.
	UploadStatus func(workerID, jobID string, attempt int) int
}

// latestSessionLocked is the newest open session of a worker.
func (s *Server) latestSessionLocked(workerID string) *session {
	var latest *session
	for ss := range s.sessions {
		if ss.workerID == workerID && !ss.ended && (latest == nil || ss.id > latest.id) {
			latest = ss
		}
	}
	return latest
}

func (s *Server) withSession(workerID string, f func(ss *session)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.latestSessionLocked(workerID)
	if ss == nil {
		return fmt.Errorf("devstudio: worker %q has no open session", workerID)
	}
	f(ss)
	return nil
}

// SendError sends the worker's newest session an `error` frame with code and
// message, then closes it with the paired close code (§3.4).
func (s *Server) SendError(workerID string, code protocol.ErrorCode, message string) error {
	return s.withSession(workerID, func(ss *session) { ss.sendErrorLocked(code, message) })
}

// SendRaw sends data as one frame of messageType (websocket.TextMessage or
// BinaryMessage) on the worker's newest session: malformed JSON, a huge
// frame, an unknown type, a binary frame.
func (s *Server) SendRaw(workerID string, messageType int, data []byte) error {
	return s.withSession(workerID, func(ss *session) {
		ss.pushLocked(outMsg{kind: outRaw, msgType: messageType, data: data})
	})
}

// SendOffer sends an offer with claim to the worker's newest session
// regardless of its state, without touching any job: the worker's answer is
// then judged by the usual rules (a reject is ignored; an accept of a job
// the session does not hold is a protocol violation).
func (s *Server) SendOffer(workerID string, claim protocol.JobOfferClaim) error {
	return s.withSession(workerID, func(ss *session) { ss.enqueueLocked(protocol.Offer{Claim: claim}) })
}

// DropWorker closes the worker's open sessions abruptly (no close frame).
func (s *Server) DropWorker(workerID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for ss := range s.sessions {
		if ss.workerID == workerID {
			ss.drop()
			n++
		}
	}
	if n == 0 {
		return fmt.Errorf("devstudio: worker %q has no open session", workerID)
	}
	return nil
}

// SetSilent makes the worker's newest session send nothing (no acks, no
// offers, no close frames) while the TCP connection stays open: a silent
// half-open socket as the worker sees it. Frames it sends are still
// processed. Setting it false resumes sending (frames skipped meanwhile
// are lost).
func (s *Server) SetSilent(workerID string, silent bool) error {
	return s.withSession(workerID, func(ss *session) { ss.silent.Store(silent) })
}
