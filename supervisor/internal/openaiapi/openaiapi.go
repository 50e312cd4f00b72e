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
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/stokerhq/stoker/supervisor/internal/localjobs"
)

// MaxJSONBytes bounds a JSON request body: a chat's messages are bounded by
// the model's context anyway, and 4 MiB is far past any context a node
// runs.
const MaxJSONBytes = 4 << 20

// MaxAudioBytes bounds a transcription upload (the model store's input
// limit is the same order: an hour of 16 kHz mono WAV is 115 MB).
const MaxAudioBytes = 256 << 20

// writeTimeout bounds each write of an answer once its job is done (the
// local API lifts its server-wide write timeout for job routes, which
// answer when the job is done): a client that stops reading gives up its
// connection after this long instead of holding a goroutine forever. A
// streamed chunk gets the same, so a stalled stream cancels its job.
const writeTimeout = 30 * time.Second

// resultWriteTimeout bounds the writing of a binary result.
const resultWriteTimeout = 5 * time.Minute

// setWriteDeadline bounds the next writes to w by d from now.
func setWriteDeadline(w http.ResponseWriter, d time.Duration) {
	http.NewResponseController(w).SetWriteDeadline(time.Now().Add(d))
}

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

// Route is one route: its ServeMux pattern, its handler, and whether it
// runs jobs (then it needs the token).
type Route struct {
	Pattern string
	Handler http.HandlerFunc
	Job     bool
}

// Routes lists the routes.
func (h *Handlers) Routes() []Route {
	return []Route{
		{"POST /v1/chat/completions", h.chat, true},
		{"POST /v1/images/generations", h.generateImage, true},
		{"GET /v1/images/files/{name}", h.imageFile, false},
		{"POST /v1/audio/transcriptions", h.transcribe, true},
		{"POST /v1/audio/speech", h.speech, true},
		{"GET /v1/models", h.models, false},
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
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
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
	writeJSON(w, status, map[string]apiError{"error": e})
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

// decodeJSON decodes a JSON body of at most MaxJSONBytes into v. Unknown
// fields are ignored: OpenAI's clients send fields this node has no use
// for (user, logprobs ...), and refusing them would break those clients.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxJSONBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return fmt.Errorf("body over %d bytes", MaxJSONBytes)
		}
		return fmt.Errorf("reading body: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("body is not the expected JSON: %w", err)
	}
	if dec.More() {
		return errors.New("body has data after the JSON value")
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encoding: "+err.Error(), http.StatusInternalServerError)
		return
	}
	setWriteDeadline(w, writeTimeout)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// ptr returns a pointer to v, for the task's optional fields.
func ptr[T any](v T) *T { return &v }
