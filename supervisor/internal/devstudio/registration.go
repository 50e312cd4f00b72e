package devstudio

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

// registration is one register-request row; guarded by Server.mu.
type registration struct {
	id         string
	installID  string
	secretHash string
	caps       protocol.WorkerCapabilities
	userAgent  string
	status     protocol.PollStatus
	workerID   string
	reason     string
	created    time.Time
}

// RegistrationView is a snapshot of a registration request.
type RegistrationView struct {
	ID           string                      `json:"id"`
	InstallID    string                      `json:"installId"`
	Status       protocol.PollStatus         `json:"status"`
	WorkerID     string                      `json:"workerId,omitempty"`
	Reason       string                      `json:"reason,omitempty"`
	MachineName  string                      `json:"machineName"`
	UserAgent    string                      `json:"userAgent"`
	Capabilities protocol.WorkerCapabilities `json:"capabilities"`
	CreatedAt    time.Time                   `json:"createdAt"`
}

// ErrUnknownRegistration is returned for a registration id never issued.
var ErrUnknownRegistration = errors.New("unknown registration request")

func (r *registration) view() RegistrationView {
	return RegistrationView{ID: r.id, InstallID: r.installID, Status: r.status, WorkerID: r.workerID,
		Reason: r.reason, MachineName: r.caps.MachineName, UserAgent: r.userAgent, Capabilities: r.caps, CreatedAt: r.created}
}

// Registrations lists registration requests in arrival order.
func (s *Server) Registrations() []RegistrationView {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]RegistrationView, 0, len(s.regOrder))
	for _, r := range s.regOrder {
		out = append(out, r.view())
	}
	return out
}

// Approve approves a pending registration: a worker id is assigned now; a
// token is minted on each approved poll (§2.3). Approving an approved
// request is a no-op; approving a rejected one is an error.
func (s *Server) Approve(requestID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.regs[requestID]
	if r == nil {
		return fmt.Errorf("approve %q: %w", requestID, ErrUnknownRegistration)
	}
	return s.approveLocked(r)
}

func (s *Server) approveLocked(r *registration) error {
	switch r.status {
	case protocol.StatusApproved:
		return nil
	case protocol.StatusRejected:
		return fmt.Errorf("approve %q: already rejected", r.id)
	}
	r.status = protocol.StatusApproved
	r.workerID = "w-" + randomHex(4)
	// The worker has no usable token until it polls (the poll mints one).
	s.workers[r.workerID] = &worker{id: r.workerID, tokenHash: hashHex(randomHex(32))}
	s.notifyLocked()
	return nil
}

// RejectRegistration rejects a pending registration with reason.
func (s *Server) RejectRegistration(requestID, reason string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.regs[requestID]
	if r == nil {
		return fmt.Errorf("reject %q: %w", requestID, ErrUnknownRegistration)
	}
	if r.status != protocol.StatusPending {
		return fmt.Errorf("reject %q: already %s", requestID, r.status)
	}
	r.status, r.reason = protocol.StatusRejected, reason
	s.notifyLocked()
	return nil
}

// AddWorker creates an approved worker directly, without the registration
// flow, and returns its id and auth token. An empty id gets a random one.
// Adding an existing id rotates its token.
func (s *Server) AddWorker(id string) (workerID, token string, err error) {
	if id == "" {
		id = "w-" + randomHex(4)
	}
	if id == "." || id == ".." {
		return "", "", fmt.Errorf("add worker: bad id %q", id)
	}
	token = randomHex(32)
	s.mu.Lock()
	defer s.mu.Unlock()
	if w := s.workers[id]; w != nil {
		w.tokenHash = hashHex(token)
	} else {
		s.workers[id] = &worker{id: id, tokenHash: hashHex(token)}
	}
	s.notifyLocked()
	return id, token, nil
}

// DeleteWorker removes a worker: its token stops working, and a connected
// session gets `error worker_deleted` and close 4004.
func (s *Server) DeleteWorker(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.workers[id]; !ok {
		return fmt.Errorf("delete worker %q: unknown worker", id)
	}
	delete(s.workers, id)
	for ss := range s.sessions {
		if ss.workerID == id {
			ss.sendErrorLocked(protocol.CodeWorkerDeleted, "worker deleted")
		}
	}
	s.notifyLocked()
	return nil
}

// handleRegisterRequest serves POST /graphics/api/workers/register-request.
func (s *Server) handleRegisterRequest(w http.ResponseWriter, r *http.Request) {
	var req protocol.RegisterRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		writeJSONError(w, http.StatusBadRequest, "bad register request: "+err.Error())
		return
	}
	if err := req.Validate(); err != nil {
		writeJSONError(w, http.StatusBadRequest, err.Error())
		return
	}
	s.mu.Lock()
	var reg *registration
	for _, old := range s.regOrder {
		if old.installID == req.InstallID && old.status == protocol.StatusPending {
			reg = old
			break
		}
	}
	if reg == nil {
		reg = &registration{id: "rr-" + randomHex(4), installID: req.InstallID, status: protocol.StatusPending, created: time.Now()}
		s.regs[reg.id] = reg
		s.regOrder = append(s.regOrder, reg)
	}
	reg.secretHash, reg.caps, reg.userAgent = req.RegistrationSecretHash, req.Capabilities, req.UserAgent
	if s.cfg.AutoApprove {
		_ = s.approveLocked(reg) // pending → approved cannot fail
	}
	s.notifyLocked()
	id := reg.id
	s.mu.Unlock()
	s.log.Info("registration request", "request", id, "machine", req.Capabilities.MachineName)
	writeJSON(w, http.StatusOK, protocol.RegisterResponse{RequestID: id, Status: protocol.StatusPending})
}

// handleRegisterPoll serves GET /graphics/api/workers/register-requests/{id}.
func (s *Server) handleRegisterPoll(w http.ResponseWriter, r *http.Request, requestID string) {
	secret, ok := bearer(r)
	s.mu.Lock()
	reg := s.regs[requestID]
	if reg == nil {
		s.mu.Unlock()
		writeJSONError(w, http.StatusNotFound, "unknown registration request")
		return
	}
	if !ok || !sameHash(protocol.HashSecret(secret), reg.secretHash) {
		s.mu.Unlock()
		writeJSONError(w, http.StatusUnauthorized, "bad registration secret")
		return
	}
	resp := protocol.PollResponse{Status: reg.status, Reason: reg.reason}
	if reg.status == protocol.StatusApproved {
		// Mint a fresh token on every approved poll and rotate the stored
		// hash (§2.3): an earlier token stops working.
		token := randomHex(32)
		wk := s.workers[reg.workerID]
		if wk == nil { // deleted since approval
			s.mu.Unlock()
			writeJSONError(w, http.StatusNotFound, "worker deleted")
			return
		}
		wk.tokenHash = hashHex(token)
		resp.WorkerID, resp.AuthToken = reg.workerID, token
		s.notifyLocked()
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, resp)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // a failed write means the client left
}

func writeJSONError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg, "reference": "devstudio-" + randomHex(4)})
}
