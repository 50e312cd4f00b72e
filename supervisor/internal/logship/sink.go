package logship

import (
	"encoding"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

// Sink turns hclog lines into queue entries. Register it on the agent's
// intercept logger:
//
//	log := hclog.NewInterceptLogger(&hclog.LoggerOptions{Name: "stoker"})
//	log.RegisterSink(logship.NewSink(queue))
//
// Mapping (spec §8.2):
//   - level: Info → info, Warn → warn, Error → error; lines below the sink's
//     level (Info by default) are not shipped.
//   - category: the value of a "category" key, else the last segment of the
//     logger name ("stoker.studio" → "studio"), else "worker".
//   - jobId: the value of a "job", "job_id" or "jobId" key.
//   - message: the line's message followed by the remaining key=value pairs.
//
// Secrets: values of type secret.Value redact themselves. Values under keys
// that name a credential (authorization, token, secret, password, cookie)
// are replaced by [redacted] whatever their type, and an http.Header has its
// Authorization, Proxy-Authorization and Cookie values redacted, so a raw
// bearer header cannot be shipped even by mistake.
type Sink struct {
	queue *Queue
	level hclog.Level
	now   func() time.Time
}

var _ hclog.SinkAdapter = (*Sink)(nil)

// SinkOption configures a Sink.
type SinkOption func(*Sink)

// SinkLevel sets the lowest level shipped (default hclog.Info). Levels
// below Info are clamped to Info: the wire has no debug level.
func SinkLevel(l hclog.Level) SinkOption {
	return func(s *Sink) {
		if l < hclog.Info {
			l = hclog.Info
		}
		s.level = l
	}
}

// SinkClock sets the clock used for entry timestamps (default time.Now).
func SinkClock(now func() time.Time) SinkOption {
	return func(s *Sink) { s.now = now }
}

// NewSink returns a sink that pushes into q.
func NewSink(q *Queue, opts ...SinkOption) *Sink {
	s := &Sink{queue: q, level: hclog.Info, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Accept implements hclog.SinkAdapter. It must not log (the intercept
// logger holds its lock while calling it) and it never blocks on I/O.
func (s *Sink) Accept(name string, level hclog.Level, msg string, args ...interface{}) {
	if level < s.level || level == hclog.Off {
		return
	}
	e := Entry{
		Ts:       protocol.FormatTimestamp(s.now()),
		Level:    wireLevel(level),
		Category: categoryFromName(name),
		Message:  msg,
	}
	var b strings.Builder
	if len(msg) > MaxMessageBytes {
		// Cut before copying (Push would cut the whole line anyway).
		fmt.Fprintf(&b, "%s … [truncated: %d bytes]", cut(msg, MaxMessageBytes), len(msg))
	} else {
		b.WriteString(msg)
	}
	for i := 0; i < len(args); i += 2 {
		key, ok := args[i].(string)
		if !ok {
			key = fmt.Sprint(args[i])
		}
		if i+1 >= len(args) {
			// hclog's own convention for a dangling value.
			fmt.Fprintf(&b, " EXTRA_VALUE_AT_END=%s", formatValue("", args[i]))
			break
		}
		val := args[i+1]
		switch key {
		case "category":
			if c := fmt.Sprint(val); c != "" {
				e.Category = c
			}
			continue
		case "job", "job_id", "jobId":
			e.JobID = cut(fmt.Sprint(val), maxFieldBytes)
			continue
		}
		b.WriteByte(' ')
		b.WriteString(key)
		b.WriteByte('=')
		b.WriteString(formatValue(key, val))
	}
	e.Message = b.String()
	s.queue.Push(e)
}

func wireLevel(l hclog.Level) string {
	switch {
	case l >= hclog.Error:
		return LevelError
	case l == hclog.Warn:
		return LevelWarn
	default:
		return LevelInfo
	}
}

func categoryFromName(name string) string {
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		name = name[i+1:]
	}
	if name == "" {
		return "worker"
	}
	return name
}

const redacted = "[redacted]"

// sensitiveKey reports whether a key names a credential.
func sensitiveKey(key string) bool {
	k := strings.ToLower(key)
	for _, s := range []string{"authorization", "token", "secret", "password", "cookie", "bearer", "credential"} {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}

func formatValue(key string, v interface{}) string {
	if sensitiveKey(key) {
		return redacted
	}
	var s string
	switch x := v.(type) {
	// The common values first, without fmt: every job logs a few lines.
	case string:
		s = x
	case int:
		s = strconv.Itoa(x)
	case int64:
		s = strconv.FormatInt(x, 10)
	case uint64:
		s = strconv.FormatUint(x, 10)
	case bool:
		s = strconv.FormatBool(x)
	case http.Header:
		s = fmt.Sprint(redactHeader(x))
	case hclog.Format:
		if len(x) > 0 {
			s = fmt.Sprintf(fmt.Sprint(x[0]), x[1:]...)
		}
	case error:
		s = x.Error()
	case fmt.Stringer:
		s = x.String()
	case encoding.TextMarshaler:
		t, err := x.MarshalText()
		if err != nil {
			s = fmt.Sprintf("!(%v)", err)
		} else {
			s = string(t)
		}
	default:
		s = fmt.Sprint(v)
	}
	// A value longer than an entry may be is cut here, before it is
	// quoted and copied into the message (Clip cuts the whole message).
	if len(s) > MaxMessageBytes {
		s = cut(s, MaxMessageBytes) + fmt.Sprintf("…(%d bytes)", len(s))
	}
	if s == "" || strings.ContainsAny(s, " \t\n\"=") {
		return strconv.Quote(s)
	}
	return s
}

func redactHeader(h http.Header) http.Header {
	c := h.Clone()
	for k := range c {
		if sensitiveKey(k) {
			c[k] = []string{redacted}
		}
	}
	return c
}
