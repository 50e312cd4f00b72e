package plugins

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// ErrorKind types a job failure. Whether the studio may retry the job
// elsewhere follows from the kind alone (see [ErrorKind.Retryable]).
type ErrorKind string

const (
	// ErrEngine: the engine failed (bad model file, library error...).
	ErrEngine ErrorKind = "engine_error"
	// ErrUnsupported: the engine cannot serve the task's kind (spec I-12).
	ErrUnsupported ErrorKind = "unsupported_kind"
	// ErrBadInput: the task itself is invalid; it fails the same way
	// anywhere.
	ErrBadInput ErrorKind = "bad_input"
	// ErrNodeLimit: the task is valid but over a limit of this node (image
	// side or pixel-steps over what its memory allows, more text than it
	// takes, an input over its size limit, too little disk to spool the
	// result). It is bad input here and retryable: a bigger node may serve
	// it, and the studio's attempt count bounds the retries. Plugins may
	// return it for their own configured limits.
	ErrNodeLimit ErrorKind = "node_limit"
	// ErrOutOfMemory: the engine or the kernel ran out of memory.
	ErrOutOfMemory ErrorKind = "out_of_memory"
	// ErrCrashed: the plugin process died or its transport broke mid-job.
	ErrCrashed ErrorKind = "crashed"
	// ErrStalled: no progress within the watchdog window.
	ErrStalled ErrorKind = "stalled"
	// ErrTimedOut: the job ran past its kind's hard deadline (a plugin
	// that reports progress forever never stalls).
	ErrTimedOut ErrorKind = "timed_out"
	// ErrUpload: the binary result could not be delivered.
	ErrUpload ErrorKind = "upload_failed"
	// ErrNoEngine: no plugin serves the offer's modelSource.engine.
	ErrNoEngine ErrorKind = "no_engine"
	// ErrFetch: a model file or task input could not be fetched.
	ErrFetch ErrorKind = "fetch_failed"
	// ErrPoison: the job brought down two plugin instances in a row on
	// this node. It is retryable: a node with more memory or another
	// device may serve it, and the studio's attempt count bounds the
	// retries; this node refuses the job if it is offered again.
	ErrPoison ErrorKind = "poison"
	// ErrCancelled: the job was cancelled (shutdown, studio gone).
	ErrCancelled ErrorKind = "cancelled"
)

// Retryable reports whether a failure of this kind may succeed on another
// attempt. Unsupported kinds and bad input fail the same way everywhere;
// everything else, node limits and poison included, is a property of this
// node at this moment, and another node may do the job.
//
// ErrNoEngine is retryable on purpose (spec open point 10): the reference
// worker sends true, and another worker that has the engine can serve the
// job, so reporting false would lose work the farm can do.
func (k ErrorKind) Retryable() bool {
	switch k {
	case ErrUnsupported, ErrBadInput:
		return false
	}
	return true
}

// JobError is a typed job failure. Plugins return it from Run to classify
// their errors; the supervisor adds crash details. Its kind survives the
// process boundary.
type JobError struct {
	Kind    ErrorKind
	Message string
	// Crash details, set by the supervisor for ErrCrashed/ErrOutOfMemory.
	ExitCode   int      // -1 when unknown or killed by a signal
	Signal     string   // e.g. "SIGSEGV"; "" when none
	StderrTail []string // the plugin's last stderr lines
	Err        error    // underlying cause, if any
}

// Errorf returns a *JobError of kind with a formatted message. A %w verb
// wraps its operand as the cause.
func Errorf(kind ErrorKind, format string, args ...any) *JobError {
	err := fmt.Errorf(format, args...)
	return &JobError{Kind: kind, Message: err.Error(), Err: errors.Unwrap(err)}
}

func (e *JobError) Error() string {
	var b strings.Builder
	b.WriteString(e.Message)
	if e.Signal != "" {
		fmt.Fprintf(&b, " (signal %s)", e.Signal)
	}
	if len(e.StderrTail) > 0 {
		b.WriteString("; last stderr: ")
		b.WriteString(strings.Join(e.StderrTail, " | "))
	}
	return b.String()
}

func (e *JobError) Unwrap() error { return e.Err }

// Retryable reports whether the studio may retry the job.
func (e *JobError) Retryable() bool { return e.Kind.Retryable() }

// AsJobError returns err as a *JobError, classifying an untyped error as an
// engine error. It returns nil for a nil err.
func AsJobError(err error) *JobError {
	if err == nil {
		return nil
	}
	var je *JobError
	if errors.As(err, &je) {
		return je
	}
	return &JobError{Kind: ErrEngine, Message: err.Error(), Err: err}
}

// Cancelled types the error that ended a cancelled job, for an engine to
// return: a context's deadline is "job deadline exceeded" of kind
// ErrCancelled; a job error (the host stopped the job and said why) is
// returned as it is; anything else is "job cancelled", of kind
// ErrCancelled.
func Cancelled(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return Errorf(ErrCancelled, "job deadline exceeded: %w", err)
	}
	var je *JobError
	if errors.As(err, &je) {
		return je
	}
	return Errorf(ErrCancelled, "job cancelled: %w", err)
}
