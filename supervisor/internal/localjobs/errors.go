package localjobs

import (
	"net/http"

	"github.com/stokerhq/stoker/plugins"
)

// Code says what went wrong with a local job, and so how the HTTP layer
// answers it.
type Code string

// The codes. The job failure kinds (plugins.ErrorKind) map onto
// CodeBadInput or CodeEngine.
const (
	CodeBadRequest   Code = "bad_request"   // the request itself is invalid
	CodeUnknownModel Code = "unknown_model" // not in the local catalog
	CodeWrongKind    Code = "wrong_kind"    // the model does not serve the task's kind
	CodeUnavailable  Code = "unavailable"   // no ready plugin serves the model's engine now
	CodeQueueFull    Code = "queue_full"    // the slot's queue is full
	CodeCancelled    Code = "cancelled"     // the request ended, or the agent is stopping
	CodeBadInput     Code = "bad_input"     // the engine refused the task (it fails the same way on any node)
	CodeEngine       Code = "engine_error"  // the engine failed: crash, out of memory, stall, fetch...
)

// Error is a local job's failure.
type Error struct {
	Code Code
	// Kind is the job failure's kind when the job ran and failed ("" for
	// a request refused before it ran).
	Kind    plugins.ErrorKind
	Message string
}

func (e *Error) Error() string { return e.Message }

// HTTPStatus is the status a local API answers the error with: 400 for
// what the client can fix, 429 for a full queue, 503 for an engine that is
// not there now, 500 for a failed engine.
func (e *Error) HTTPStatus() int {
	switch e.Code {
	case CodeBadRequest, CodeUnknownModel, CodeWrongKind, CodeBadInput:
		return http.StatusBadRequest
	case CodeQueueFull:
		return http.StatusTooManyRequests
	case CodeUnavailable:
		return http.StatusServiceUnavailable
	case CodeCancelled:
		// The client is usually gone; a stopping agent says it this way.
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// fromJobError types a failure the runner reported.
func fromJobError(je *plugins.JobError, message string) *Error {
	code := CodeEngine
	switch je.Kind {
	case plugins.ErrBadInput, plugins.ErrUnsupported, plugins.ErrNodeLimit:
		code = CodeBadInput
	case plugins.ErrCancelled:
		code = CodeCancelled
	}
	return &Error{Code: code, Kind: je.Kind, Message: message}
}

// RetryAfterSeconds is what a local API tells a client refused for a full
// queue or an engine not there to wait before it tries again: long enough
// for a small job to finish, short enough that a person does not give up.
const RetryAfterSeconds = 10
