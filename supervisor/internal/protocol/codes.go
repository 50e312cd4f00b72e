package protocol

// ErrorCode is the code of an `error` frame (§4.2.6), snake_case on the wire.
type ErrorCode string

// The error codes of §4.2.6.
const (
	CodeAuthFailed        ErrorCode = "auth_failed"
	CodeProtocolViolation ErrorCode = "protocol_violation"
	CodeDuplicateWorker   ErrorCode = "duplicate_worker"
	CodeWorkerDeleted     ErrorCode = "worker_deleted"
	CodeInternalError     ErrorCode = "internal_error"
)

// WebSocket close codes (§3.4).
const (
	CloseNormal            = 1000
	CloseAuthFailed        = 4001
	CloseProtocolViolation = 4002
	CloseDuplicateWorker   = 4003
	CloseWorkerDeleted     = 4004
)

// CloseCode returns the close code paired 1:1 with c (§3.4). internal_error
// and unknown codes pair with 1000.
func (c ErrorCode) CloseCode() int {
	switch c {
	case CodeAuthFailed:
		return CloseAuthFailed
	case CodeProtocolViolation:
		return CloseProtocolViolation
	case CodeDuplicateWorker:
		return CloseDuplicateWorker
	case CodeWorkerDeleted:
		return CloseWorkerDeleted
	}
	return CloseNormal
}

// ErrorCodeForClose returns the error code paired with a close code, and
// false for a close code outside the table of §3.4.
func ErrorCodeForClose(code int) (ErrorCode, bool) {
	switch code {
	case CloseAuthFailed:
		return CodeAuthFailed, true
	case CloseProtocolViolation:
		return CodeProtocolViolation, true
	case CloseDuplicateWorker:
		return CodeDuplicateWorker, true
	case CloseWorkerDeleted:
		return CodeWorkerDeleted, true
	case CloseNormal:
		return CodeInternalError, true
	}
	return "", false
}

// RejectCode is the optional structured code of a `reject` (§4.1.4, LATER).
// Only busy and paused are known (open point 2).
type RejectCode string

// The reject codes of §4.1.4.
const (
	RejectBusy   RejectCode = "busy"
	RejectPaused RejectCode = "paused"
)

// Transient reports whether the studio requeues the job without counting an
// attempt (busy, paused).
func (c RejectCode) Transient() bool { return c == RejectBusy || c == RejectPaused }

// Reject reasons used by the reference worker (§4.1.4).
const (
	ReasonPaused       = "worker paused by operator"
	ReasonBusy         = "worker already has an in-flight job"
	ReasonOnlyWhenIdle = "only when idle: the person is using this computer"
)
