// Package imageapi is the reference worker's local image API, served on the
// agent's local API server: people on the node generate images without any
// studio, through the same model store and engine host as studio jobs
// (package localjobs runs them).
//
//	POST   /image        JSON {prompt, model?, negativePrompt?, width?, height?,
//	                     steps?, seed?, ext?, cfgScale?, samplingMethod?};
//	                     answers the image's bytes (200), 400 for a bad request
//	                     or an unknown or non-image model, 429 with Retry-After
//	                     when the node's job queue is full, 503 when no plugin
//	                     serves the model's engine now, 500 when the engine
//	                     fails. Errors are JSON {"error": "..."}.
//	GET    /models       the local model catalog: {"models": [{id, engine,
//	                     files, cliDefaults}, ...]} (the studio's ModelSource
//	                     shape, with the id beside it)
//	POST   /models       adds or replaces one model (the same shape); 200
//	                     with the model, 400 when it is invalid
//	DELETE /models/{id}  removes one; 200, 404 when there is none, 400 for an
//	                     id that is not a plain name
//	GET    /jobs         the recent local jobs, newest first: {"jobs": [...]}
//
// GET /healthz is the local API's own (package localapi). The routes that
// run jobs or change the catalog take the local API's bearer token from
// every peer (localapi.JobAccess); the GET routes follow the local API's
// read rule.
package imageapi

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/stokerhq/stoker/supervisor/internal/jobhttp"
	"github.com/stokerhq/stoker/supervisor/internal/localjobs"
	"github.com/stokerhq/stoker/supervisor/internal/localmodels"
	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

// MaxBodyBytes bounds a POST body: an image request or a catalog entry is
// a few hundred bytes; 64 KiB leaves room for a long prompt.
const MaxBodyBytes = 64 << 10

// Handlers serves the routes. Create it with New.
type Handlers struct {
	jobs         *localjobs.Service
	defaultModel string
}

// New returns the handlers over jobs; defaultModel is the model of a
// request that names none ("" : such a request is refused).
func New(jobs *localjobs.Service, defaultModel string) *Handlers {
	return &Handlers{jobs: jobs, defaultModel: defaultModel}
}

// Routes lists the routes.
func (h *Handlers) Routes() []jobhttp.Route {
	return []jobhttp.Route{
		{Pattern: "POST /image", Handler: h.image, Job: true},
		{Pattern: "GET /models", Handler: h.listModels, Job: false},
		{Pattern: "POST /models", Handler: h.putModel, Job: true},
		{Pattern: "DELETE /models/{id}", Handler: h.deleteModel, Job: true},
		{Pattern: "GET /jobs", Handler: h.listJobs, Job: false},
	}
}

// imageRequest is POST /image's body: the reference's fields, which are
// the spec's ImageParams with the model beside them.
type imageRequest struct {
	Model string `json:"model"`
	protocol.ImageParams
}

func (h *Handlers) image(w http.ResponseWriter, r *http.Request) {
	var req imageRequest
	if err := jobhttp.DecodeJSON(w, r, &req, MaxBodyBytes, true); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.Prompt == "" {
		writeError(w, http.StatusBadRequest, "prompt is required")
		return
	}
	if req.Model == "" {
		req.Model = h.defaultModel
	}
	if req.Model == "" {
		writeError(w, http.StatusBadRequest, "no model named and this node has no default image model")
		return
	}
	if req.InitImageURL != "" || req.MaskURL != "" || req.RefImageURL != "" {
		writeError(w, http.StatusBadRequest, "initImageUrl, maskUrl and refImageUrl are studio job fields; the local image API makes images from a prompt")
		return
	}
	p := req.ImageParams
	res, err := h.jobs.Run(r.Context(), localjobs.Request{
		Model: req.Model,
		Task:  protocol.Task{Kind: protocol.KindImage, Image: &p},
	})
	if err != nil {
		writeJobError(w, err)
		return
	}
	defer res.Close()
	if res.File == nil {
		writeError(w, http.StatusInternalServerError, "the engine returned no image")
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", jobhttp.MediaType(res.Ext))
	hd.Set("Content-Length", strconv.FormatInt(res.Size, 10))
	hd.Set("X-Job-Id", res.JobID)
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	// The local API lifts its write timeout for job routes (a job answers
	// when it is done); the answer's own writes are bounded here.
	http.NewResponseController(w).SetWriteDeadline(time.Now().Add(jobhttp.ResultWriteTimeout))
	w.WriteHeader(http.StatusOK)
	io.Copy(w, res.File)
}

func (h *Handlers) listModels(w http.ResponseWriter, r *http.Request) {
	jobhttp.WriteJSON(w, http.StatusOK, map[string]any{"models": h.jobs.Models().List()})
}

func (h *Handlers) putModel(w http.ResponseWriter, r *http.Request) {
	var m localmodels.Model
	if err := jobhttp.DecodeJSON(w, r, &m, MaxBodyBytes, true); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := h.jobs.Models().Put(m); err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, localmodels.ErrInvalid) || errors.Is(err, localmodels.ErrFull) {
			status = http.StatusBadRequest
		}
		writeError(w, status, err.Error())
		return
	}
	jobhttp.WriteJSON(w, http.StatusOK, m)
}

func (h *Handlers) deleteModel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	err := h.jobs.Models().Delete(id)
	switch {
	case err == nil:
		jobhttp.WriteJSON(w, http.StatusOK, map[string]string{"deleted": id})
	case errors.Is(err, localmodels.ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, localmodels.ErrInvalid):
		writeError(w, http.StatusBadRequest, err.Error())
	default:
		writeError(w, http.StatusInternalServerError, err.Error())
	}
}

func (h *Handlers) listJobs(w http.ResponseWriter, r *http.Request) {
	jobhttp.WriteJSON(w, http.StatusOK, map[string]any{"jobs": h.jobs.Recent()})
}

// writeJobError answers a local job's failure with its status, and
// Retry-After for a full queue.
func writeJobError(w http.ResponseWriter, err error) {
	var je *localjobs.Error
	if !errors.As(err, &je) {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if je.Code == localjobs.CodeQueueFull || je.Code == localjobs.CodeUnavailable {
		w.Header().Set("Retry-After", strconv.Itoa(localjobs.RetryAfterSeconds))
	}
	writeError(w, je.HTTPStatus(), je.Message)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	jobhttp.WriteJSON(w, status, map[string]string{"error": msg})
}
