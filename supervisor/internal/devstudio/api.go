package devstudio

import (
	_ "embed"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/stokerhq/stoker/supervisor/internal/httpguard"
	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

//go:embed dashboard.html
var dashboardHTML []byte

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	api := protocol.APIPrefix
	mux.HandleFunc("POST "+api+protocol.RouteRegisterRequest, s.handleRegisterRequest)
	// register-requests/{id} and {workerId}/connect overlap as patterns,
	// so one route tells them apart.
	mux.HandleFunc("GET "+api+"/workers/{a}/{b}", func(w http.ResponseWriter, r *http.Request) {
		switch a, b := r.PathValue("a"), r.PathValue("b"); {
		case a == "register-requests":
			s.handleRegisterPoll(w, r, b)
		case b == "connect":
			s.handleConnect(w, r, a)
		default:
			http.NotFound(w, r)
		}
	})
	mux.HandleFunc("POST "+api+"/workers/{workerId}/jobs/{jobId}/complete", s.handleComplete)

	mux.HandleFunc("GET /dev/files/{name}", s.handleDevFile)

	mux.HandleFunc("POST /api/jobs", s.handleSubmit)
	mux.HandleFunc("GET /api/jobs", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, s.Jobs()) })
	mux.HandleFunc("GET /api/jobs/{id}", s.handleJob)
	mux.HandleFunc("GET /api/jobs/{id}/result", s.handleResult)
	mux.HandleFunc("GET /api/models", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, s.catalog.IDs()) })
	mux.HandleFunc("GET /api/stats", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, s.Stats()) })
	mux.HandleFunc("GET /api/workers", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, s.Workers()) })
	mux.HandleFunc("GET /api/workers/{id}/logs", s.handleWorkerLogs)
	mux.HandleFunc("GET /api/registrations", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, s.Registrations()) })
	mux.HandleFunc("POST /api/registrations/{id}/approve", s.handleApprove)
	mux.HandleFunc("POST /api/registrations/{id}/reject", s.handleReject)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src 'self'; media-src 'self'")
		_, _ = w.Write(dashboardHTML)
	})
	return mux
}

// guard applies, before any route, what a hostile web page in a
// developer's browser could otherwise do to a studio on loopback: every
// route wants a Host no DNS rebinding can forge (403), no POST may be a
// cross-origin browser request (403), and a POST to the people's API
// (/api/...) must be application/json (415), which no form and no
// cross-site script without a CORS preflight can send. Workers, curl and
// tests send neither Origin nor Sec-Fetch-Site and pass.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := httpguard.CheckHost(r, s.cfg.AllowedHosts)
		if err == nil && r.Method == http.MethodPost {
			if strings.HasPrefix(r.URL.Path, "/api/") {
				err = httpguard.CheckJSONPost(r, s.cop)
			} else {
				err = httpguard.CheckCrossOrigin(r, s.cop)
			}
		}
		if err != nil {
			s.log.Debug("refused a request", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "error", err)
			writeJSONError(w, httpguard.StatusOf(err), "devstudio: "+err.Error())
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Handler returns the server's HTTP handler, for mounting it elsewhere
// (the WebSocket route hijacks its connection, so the mounting server must
// allow that).
func (s *Server) Handler() http.Handler { return s.httpSrv.Handler }

// DevFileURL returns the URL under which FilesDir/name is served, for
// catalog entries of generated dev models.
func (s *Server) DevFileURL(name string) string {
	return s.URL() + "/dev/files/" + url.PathEscape(name)
}

// Workers returns snapshots of every worker, sorted by id.
func (s *Server) Workers() []WorkerView {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]WorkerView, 0, len(s.workers))
	for _, w := range s.workers {
		out = append(out, w.viewLocked())
	}
	sort.Slice(out, func(a, b int) bool { return out[a].ID < out[b].ID })
	return out
}

// WorkerLogs returns the log entries kept for worker id (oldest first, at
// most Config.LogRing) and whether the worker exists.
func (s *Server) WorkerLogs(id string) ([]protocol.LogEntry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.workers[id]
	if !ok {
		return nil, false
	}
	return append([]protocol.LogEntry{}, w.logs...), true
}

// SubmitRequest is the body of POST /api/jobs.
type SubmitRequest struct {
	Model string          `json:"model"`
	Task  json.RawMessage `json:"task"`
}

func (s *Server) handleSubmit(w http.ResponseWriter, r *http.Request) {
	var req SubmitRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeJSONError(w, http.StatusBadRequest, "bad request: "+err.Error())
		return
	}
	if len(req.Task) == 0 {
		writeJSONError(w, http.StatusBadRequest, "missing task")
		return
	}
	id, err := s.Submit(req.Model, req.Task)
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"id": id})
}

func (s *Server) handleJob(w http.ResponseWriter, r *http.Request) {
	v, ok := s.Job(r.PathValue("id"))
	if !ok {
		writeJSONError(w, http.StatusNotFound, "unknown job")
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) handleWorkerLogs(w http.ResponseWriter, r *http.Request) {
	logs, ok := s.WorkerLogs(r.PathValue("id"))
	if !ok {
		writeJSONError(w, http.StatusNotFound, "unknown worker")
		return
	}
	writeJSON(w, http.StatusOK, logs)
}

func (s *Server) handleApprove(w http.ResponseWriter, r *http.Request) {
	s.answerRegistration(w, s.Approve(r.PathValue("id")))
}

func (s *Server) handleReject(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Reason string `json:"reason"`
	}
	if r.ContentLength != 0 {
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&body); err != nil {
			writeJSONError(w, http.StatusBadRequest, "bad request: "+err.Error())
			return
		}
	}
	s.answerRegistration(w, s.RejectRegistration(r.PathValue("id"), body.Reason))
}

func (s *Server) answerRegistration(w http.ResponseWriter, err error) {
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	case errors.Is(err, ErrUnknownRegistration):
		writeJSONError(w, http.StatusNotFound, err.Error())
	default:
		writeJSONError(w, http.StatusConflict, err.Error())
	}
}
