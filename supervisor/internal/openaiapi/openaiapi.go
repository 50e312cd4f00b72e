// Package openaiapi serves OpenAI-compatible routes on the agent's local
// API, so that clients and SDKs written for OpenAI (and for Ollama and
// LocalAI, which speak the same) run jobs on this node: each request is
// mapped onto the spec's task parameters and run as a local job (package
// localjobs) on the local model catalog's models.
//
//	POST /v1/chat/completions      llm; "stream": true answers server-sent
//	                               events, one chunk per piece of text as
//	                               the engine generates it
//	POST /v1/images/generations    image; b64_json, or a URL under
//	                               /v1/images/files/ on this server
//	GET  /v1/images/files/{name}   an image made for a "url" answer (the
//	                               last MaxStoredImages are kept)
//	POST /v1/audio/transcriptions  audio_stt; multipart with the audio file
//	POST /v1/audio/speech          audio_tts; answers the audio's bytes
//	GET  /v1/models                the local catalog's models
//
// Errors are in OpenAI's shape: {"error": {"message", "type", "param",
// "code"}}, with the status of localjobs.Error.HTTPStatus (429 with
// Retry-After when the node's job queue is full). The routes that run jobs
// take the local API's bearer token as the API key
// (localapi.JobAccess); GET routes follow the local API's read rule. What
// each request field becomes is in docs/local-api.md.
package openaiapi

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/stokerhq/stoker/supervisor/internal/jobhttp"
	"github.com/stokerhq/stoker/supervisor/internal/localjobs"
)

// MaxJSONBytes bounds a JSON request body: a chat's messages are bounded by
// the model's context anyway, and 4 MiB is far past any context a node
// runs.
const MaxJSONBytes = 4 << 20

// MaxAudioBytes bounds a transcription upload (the model store's input
// limit is the same order: an hour of 16 kHz mono WAV is 115 MB).
const MaxAudioBytes = 256 << 20

// Handlers serves the routes. Create it with New.
type Handlers struct {
	jobs   *localjobs.Service
	images *imageStore
	now    func() time.Time
}

// New returns the handlers over jobs; images made for a "url" answer are
// kept in imageDir.
func New(jobs *localjobs.Service, imageDir string) (*Handlers, error) {
	st, err := newImageStore(imageDir, MaxStoredImages)
	if err != nil {
		return nil, err
	}
	return &Handlers{jobs: jobs, images: st, now: time.Now}, nil
}

// Routes lists the routes.
func (h *Handlers) Routes() []jobhttp.Route {
	return []jobhttp.Route{
		{Pattern: "POST /v1/chat/completions", Handler: h.chat, Job: true},
		{Pattern: "POST /v1/images/generations", Handler: h.generateImage, Job: true},
		{Pattern: "GET /v1/images/files/{name}", Handler: h.imageFile, Job: false},
		{Pattern: "POST /v1/audio/transcriptions", Handler: h.transcribe, Job: true},
		{Pattern: "POST /v1/audio/speech", Handler: h.speech, Job: true},
		{Pattern: "GET /v1/models", Handler: h.models, Job: false},
	}
}

// modelObject is one entry of GET /v1/models.
type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
	// Engine is the model's engine (an extension: OpenAI has no such
	// field; clients ignore it).
	Engine string `json:"engine"`
}

func (h *Handlers) models(w http.ResponseWriter, r *http.Request) {
	data := []modelObject{}
	for _, m := range h.jobs.Models().List() {
		data = append(data, modelObject{ID: m.ID, Object: "model", OwnedBy: "stoker", Engine: m.Engine})
	}
	jobhttp.WriteJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
}

// apiError is OpenAI's error object.
type apiError struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

// writeError answers an error in OpenAI's shape.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	typ := "invalid_request_error"
	switch {
	case status == http.StatusTooManyRequests:
		typ = "rate_limit_error"
	case status >= 500:
		typ = "server_error"
	}
	e := apiError{Message: msg, Type: typ}
	if code != "" {
		e.Code = &code
	}
	jobhttp.WriteJSON(w, status, map[string]apiError{"error": e})
}

// decodeBody reads a JSON request body into v: at most MaxJSONBytes, and
// fields this API does not know are ignored (clients send user, logprobs
// and the like). It reports whether it did; if not, it has answered 400.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := jobhttp.DecodeJSON(w, r, v, MaxJSONBytes, false); err != nil {
		badRequest(w, err.Error())
		return false
	}
	return true
}

// badRequest answers a 400 for the client's mistake.
func badRequest(w http.ResponseWriter, msg string) {
	writeError(w, http.StatusBadRequest, "invalid_request", msg)
}

// writeJobError answers a local job's failure.
func writeJobError(w http.ResponseWriter, err error) {
	var je *localjobs.Error
	if !errors.As(err, &je) {
		writeError(w, http.StatusInternalServerError, "engine_error", err.Error())
		return
	}
	if je.Code == localjobs.CodeQueueFull || je.Code == localjobs.CodeUnavailable {
		w.Header().Set("Retry-After", strconv.Itoa(localjobs.RetryAfterSeconds))
	}
	code := string(je.Code)
	if je.Kind != "" {
		code = string(je.Kind)
	}
	if je.Code == localjobs.CodeUnknownModel {
		code = "model_not_found"
	}
	writeError(w, je.HTTPStatus(), code, je.Message)
}

// ptr returns a pointer to v, for the task's optional fields.
func ptr[T any](v T) *T { return &v }
