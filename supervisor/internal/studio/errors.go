package studio

import (
	"errors"
	"fmt"

	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

// ErrAuthFailed is returned by Run when the studio refused the credentials
// (401 on the upgrade, an auth_failed error frame, or close 4001). It is
// never retried: the operator must register the worker again.
var ErrAuthFailed = errors.New("studio: authentication failed; run `stoker register --reset`")

// ErrReconnectLimit is wrapped by Run's error when ReconnectAttempts
// consecutive attempts failed.
var ErrReconnectLimit = errors.New("studio: reconnect attempts exhausted")

// ErrSessionClosed is returned by a send on a session that has ended, such
// as a Reporter whose accepting session dropped.
var ErrSessionClosed = errors.New("studio: session closed")

// ErrAlreadyReported is returned by a Reporter method called after the
// job's terminal outcome was delivered (R5).
var ErrAlreadyReported = errors.New("studio: job outcome already reported")

// FatalError is returned by Run when the studio ended the session in a way
// that forbids reconnecting (duplicate_worker, worker_deleted).
type FatalError struct {
	// Code is the error frame's code, or the one paired with the close code.
	Code protocol.ErrorCode
	// CloseCode is the close code when the session ended by a close frame
	// without an error frame; 0 otherwise.
	CloseCode int
	Message   string
}

func (e *FatalError) Error() string {
	if e.CloseCode != 0 {
		return fmt.Sprintf("studio: fatal: closed with %d (%s): %s", e.CloseCode, e.Code, e.Message)
	}
	return fmt.Sprintf("studio: fatal: %s: %s", e.Code, e.Message)
}

// UploadError is a binary result upload that failed after its retries. The
// job runner decides what to report (spec: fail{retryable:true}).
type UploadError struct {
	// Status is the HTTP status of the last attempt; 0 when it failed
	// before an answer (transport error, reading the result).
	Status int
	// Body is up to 300 characters of the last answer's body.
	Body string
	// Attempts is how many attempts were made.
	Attempts int
	// Err is the last transport error, if any.
	Err error
}

func (e *UploadError) Error() string {
	switch {
	case e.Status != 0 && e.Body != "":
		return fmt.Sprintf("upload result: status %d after %d attempt(s): %s", e.Status, e.Attempts, e.Body)
	case e.Status != 0:
		return fmt.Sprintf("upload result: status %d after %d attempt(s)", e.Status, e.Attempts)
	}
	return fmt.Sprintf("upload result: after %d attempt(s): %v", e.Attempts, e.Err)
}

// Unwrap returns the transport error.
func (e *UploadError) Unwrap() error { return e.Err }

// ErrFrameTooLarge is matched (errors.Is) by the error of a send whose
// frame is over Config.MaxSendFrameBytes: nothing was sent, and the session
// goes on.
var ErrFrameTooLarge = errors.New("studio: frame over the size limit")

// FrameTooLargeError is a frame that was not sent because it is over the
// frame limit. The limit stands for the studio's (which refuses a larger
// frame with close 1009), so such a frame would be refused from any node.
type FrameTooLargeError struct {
	Type  string // frame type, e.g. "completeJson"
	Size  int64  // encoded bytes
	Limit int64
}

func (e *FrameTooLargeError) Error() string {
	return fmt.Sprintf("%s frame of %d bytes is over the %d-byte frame limit", e.Type, e.Size, e.Limit)
}

// Is makes errors.Is(err, ErrFrameTooLarge) true.
func (e *FrameTooLargeError) Is(target error) bool { return target == ErrFrameTooLarge }
