package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Frame types (the `type` discriminator, §4).
const (
	TypeHello        = "hello"
	TypeHeartbeat    = "heartbeat"
	TypeAccept       = "accept"
	TypeReject       = "reject"
	TypeCompleteJSON = "completeJson"
	TypeFail         = "fail"
	TypeLogBatch     = "logBatch"
	TypeReadyForMore = "readyForMore"

	TypeWelcome      = "welcome"
	TypeOffer        = "offer"
	TypeHeartbeatAck = "heartbeatAck"
	TypeCompleteAck  = "completeAck"
	TypeFailAck      = "failAck"
	TypeError        = "error"
)

// ErrUnknownFrame is wrapped by Decode when a well-formed frame carries a
// `type` this package does not know. The session may skip such frames (open
// point 9) instead of tearing down.
var ErrUnknownFrame = errors.New("unknown frame type")

// ErrMalformed is wrapped by Decode for anything that is not a well-formed
// frame: not JSON, not an object, no `type`, a field of the wrong type, or a
// required field missing.
var ErrMalformed = errors.New("malformed frame")

// Frame is one WebSocket text frame, in either direction. The concrete types
// are the structs of this package; use a type switch on the result of Decode.
type Frame interface {
	frameType() string
}

// TypeOf returns the `type` discriminator of f.
func TypeOf(f Frame) string { return f.frameType() }

// Hello is the worker's first frame (§4.1.1).
type Hello struct {
	AuthToken    string             `json:"authToken"`
	Capabilities WorkerCapabilities `json:"capabilities"`
}

// String redacts the token so a logged frame never leaks it.
func (h Hello) String() string {
	return fmt.Sprintf("hello{authToken:[redacted] machine:%q}", h.Capabilities.MachineName)
}

// GoString redacts the token.
func (h Hello) GoString() string { return h.String() }

// Heartbeat is sent every 5 s after welcome (§4.1.2). CurrentJobID is the
// accepted, running job; empty (omitted) when idle.
type Heartbeat struct {
	Capabilities WorkerCapabilities `json:"capabilities"`
	CurrentJobID string             `json:"currentJobId,omitempty"`
}

// Accept takes an offered job (§4.1.3).
type Accept struct {
	JobID string `json:"jobId"`
}

// Reject declines an offered job (§4.1.4). Code is omitted when empty.
type Reject struct {
	JobID  string     `json:"jobId"`
	Reason string     `json:"reason"`
	Code   RejectCode `json:"code,omitempty"`
}

// CompleteJSON reports a JSON result (§4.1.5). Result must be a JSON object
// or array. Prompt is the full prompt (§7.4); the reference always sends it.
type CompleteJSON struct {
	JobID  string          `json:"jobId"`
	Result json.RawMessage `json:"result"`
	Prompt string          `json:"prompt,omitempty"`
}

// Fail reports a failed job (§4.1.6). Retryable is always sent.
type Fail struct {
	JobID     string `json:"jobId"`
	Error     string `json:"error"`
	Retryable bool   `json:"retryable"`
}

// LogBatch ships log entries (§4.1.7). Entries is always sent ([] when nil).
type LogBatch struct {
	Entries []LogEntry `json:"entries"`
}

// ReadyForMore exists in the schema and is parseable, but a worker must
// never send it (I-2).
type ReadyForMore struct{}

// Welcome accepts the hello (§4.2.1). ServerTime is opaque text.
type Welcome struct {
	WorkerID   string `json:"workerId"`
	ServerTime string `json:"serverTime"`
}

// Offer pushes a job to the worker (§4.2.2). See [JobOfferClaim] for how an
// incomplete claim is handled.
type Offer struct {
	Claim JobOfferClaim `json:"claim"`
}

// HeartbeatAck answers every heartbeat (§4.2.3).
type HeartbeatAck struct{}

// CompleteAck confirms a result (§4.2.4).
type CompleteAck struct {
	JobID string `json:"jobId"`
}

// FailAck confirms a failure (§4.2.5).
type FailAck struct {
	JobID string `json:"jobId"`
}

// Error is the studio's fatal or auth error frame (§4.2.6); the studio then
// closes with Code.CloseCode(). It is also a Go error.
type Error struct {
	Code    ErrorCode `json:"code"`
	Message string    `json:"message"`
}

// Error returns "studio error <code>: <message>".
func (e Error) Error() string { return fmt.Sprintf("studio error %s: %s", e.Code, e.Message) }

func (Hello) frameType() string        { return TypeHello }
func (Heartbeat) frameType() string    { return TypeHeartbeat }
func (Accept) frameType() string       { return TypeAccept }
func (Reject) frameType() string       { return TypeReject }
func (CompleteJSON) frameType() string { return TypeCompleteJSON }
func (Fail) frameType() string         { return TypeFail }
func (LogBatch) frameType() string     { return TypeLogBatch }
func (ReadyForMore) frameType() string { return TypeReadyForMore }
func (Welcome) frameType() string      { return TypeWelcome }
func (Offer) frameType() string        { return TypeOffer }
func (HeartbeatAck) frameType() string { return TypeHeartbeatAck }
func (CompleteAck) frameType() string  { return TypeCompleteAck }
func (FailAck) frameType() string      { return TypeFailAck }
func (Error) frameType() string        { return TypeError }

// MarshalJSON always writes entries as an array.
func (b LogBatch) MarshalJSON() ([]byte, error) {
	type plain LogBatch
	p := plain(b)
	if p.Entries == nil {
		p.Entries = []LogEntry{}
	}
	return json.Marshal(p)
}

// Encode returns f as one JSON object with "type" first and the fields
// flattened next to it. It accepts values and pointers of the frame types.
func Encode(f Frame) ([]byte, error) {
	if f == nil {
		return nil, errors.New("protocol.Encode: nil frame")
	}
	// The frame's fields are encoded right after "type" in one buffer,
	// their opening brace then overwritten with a comma. Type names are
	// plain ASCII and need no escaping.
	var buf bytes.Buffer
	buf.Grow(256)
	buf.WriteString(`{"type":"`)
	buf.WriteString(f.frameType())
	buf.WriteByte('"')
	mark := buf.Len()
	// No HTML escaping: engine results go to the studio verbatim, and
	// "<", ">" and "&" turned into \u escapes would not be (the fuzzer
	// found a result that no longer round-tripped byte for byte).
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(f); err != nil {
		return nil, fmt.Errorf("protocol.Encode %s: %w", f.frameType(), err)
	}
	b := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	switch body := b[mark:]; {
	case len(body) < 2 || body[0] != '{':
		return nil, fmt.Errorf("protocol.Encode %s: not a JSON object: %.40s", f.frameType(), body)
	case len(body) == 2: // {}
		return append(b[:mark], '}'), nil
	default:
		b[mark] = ','
		return b, nil
	}
}

// Decode parses one text frame and returns a value (not a pointer) of the
// concrete frame type. Errors wrap [ErrUnknownFrame] for a well-formed frame
// of unknown type and [ErrMalformed] for anything else; the error text names
// the frame type and the field.
func Decode(data []byte) (Frame, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, fmt.Errorf("protocol: %w: not a JSON object", ErrMalformed)
	}
	typ, ok := peekString(trimmed, "type")
	if !ok {
		var head struct {
			Type *string `json:"type"`
		}
		if err := json.Unmarshal(trimmed, &head); err != nil {
			return nil, fmt.Errorf("protocol: %w: %v", ErrMalformed, err)
		}
		if head.Type == nil {
			return nil, fmt.Errorf("protocol: %w: missing type", ErrMalformed)
		}
		typ = *head.Type
	}
	var (
		f   Frame
		err error
	)
	switch typ {
	case TypeHello:
		f, err = decodeAs[Hello](trimmed)
	case TypeHeartbeat:
		f, err = decodeAs[Heartbeat](trimmed)
	case TypeAccept:
		f, err = decodeAs[Accept](trimmed)
	case TypeReject:
		f, err = decodeAs[Reject](trimmed)
	case TypeCompleteJSON:
		f, err = decodeCompleteJSON(trimmed)
	case TypeFail:
		f, err = decodeAs[Fail](trimmed)
	case TypeLogBatch:
		f, err = decodeAs[LogBatch](trimmed)
	case TypeReadyForMore:
		f, err = decodeAs[ReadyForMore](trimmed)
	case TypeWelcome:
		f, err = decodeAs[Welcome](trimmed)
	case TypeOffer:
		f, err = decodeAs[Offer](trimmed)
	case TypeHeartbeatAck:
		f, err = decodeAs[HeartbeatAck](trimmed)
	case TypeCompleteAck:
		f, err = decodeAs[CompleteAck](trimmed)
	case TypeFailAck:
		f, err = decodeAs[FailAck](trimmed)
	case TypeError:
		f, err = decodeAs[Error](trimmed)
	default:
		if ok && !json.Valid(trimmed) { // peeked, never parsed
			return nil, fmt.Errorf("protocol: %w: %v", ErrMalformed, json.Unmarshal(trimmed, new(struct{})))
		}
		return nil, fmt.Errorf("protocol: %w %q", ErrUnknownFrame, typ)
	}
	if err != nil {
		return nil, fmt.Errorf("protocol: %w: %s: %v", ErrMalformed, typ, err)
	}
	if err := checkRequired(f, trimmed); err != nil {
		return nil, fmt.Errorf("protocol: %w: %s: %v", ErrMalformed, typ, err)
	}
	return f, nil
}

func decodeAs[T Frame](data []byte) (Frame, error) {
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	return v, nil
}

// checkRequired reports a required field that is missing (or null). Strings
// count as missing when empty.
func checkRequired(f Frame, raw []byte) error {
	missing := func(name string) error { return fmt.Errorf("missing %s", name) }
	// The frame is parsed once more, as a map, only when a check needs to
	// know whether a field was there: the frames of every job (offer,
	// accept, completeJson, the acks) need not.
	var present map[string]json.RawMessage
	has := func(k string) bool {
		if present == nil && json.Unmarshal(raw, &present) != nil {
			return false // raw decoded as the frame already: not reached
		}
		v, ok := present[k]
		return ok && !bytes.Equal(bytes.TrimSpace(v), []byte("null"))
	}
	switch v := f.(type) {
	case Hello:
		if v.AuthToken == "" {
			return missing("authToken")
		}
		if !has("capabilities") {
			return missing("capabilities")
		}
	case Heartbeat:
		if !has("capabilities") {
			return missing("capabilities")
		}
	case Accept:
		if v.JobID == "" {
			return missing("jobId")
		}
	case Reject:
		if v.JobID == "" {
			return missing("jobId")
		}
		if !has("reason") {
			return missing("reason")
		}
	case CompleteJSON:
		if v.JobID == "" {
			return missing("jobId")
		}
		if !isJSONContainer(v.Result) {
			return errors.New("result must be a JSON object or array")
		}
	case Fail:
		if v.JobID == "" {
			return missing("jobId")
		}
		if !has("error") {
			return missing("error")
		}
		if !has("retryable") {
			return missing("retryable")
		}
	case LogBatch:
		if v.Entries == nil { // absent or null; [] decodes to an empty slice
			return missing("entries")
		}
	case Welcome:
		if v.WorkerID == "" {
			return missing("workerId")
		}
		if !has("serverTime") {
			return missing("serverTime")
		}
	case Offer:
		if v.Claim.JobID == "" {
			if !has("claim") {
				return missing("claim")
			}
			return missing("claim.jobId")
		}
	case CompleteAck:
		if v.JobID == "" {
			return missing("jobId")
		}
	case FailAck:
		if v.JobID == "" {
			return missing("jobId")
		}
	case Error:
		if v.Code == "" {
			return missing("code")
		}
	}
	return nil
}

// decodeCompleteJSON decodes a completeJson frame and compacts its result,
// so that decoded frames compare equal. A method UnmarshalJSON would do the
// same, but encoding/json validates a value again before it calls one.
func decodeCompleteJSON(data []byte) (Frame, error) {
	var c CompleteJSON
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, err
	}
	compactRaw(&c.Result)
	return c, nil
}
