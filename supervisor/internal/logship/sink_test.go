package logship

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/stokerhq/stoker/supervisor/internal/secret"
)

func newLogger(t *testing.T, opts ...SinkOption) (hclog.InterceptLogger, *Queue) {
	t.Helper()
	q := New()
	log := hclog.NewInterceptLogger(&hclog.LoggerOptions{Name: "stoker", Output: io.Discard, Level: hclog.Trace})
	opts = append([]SinkOption{SinkClock(func() time.Time { return fixed.In(time.FixedZone("x", 3600)) })}, opts...)
	log.RegisterSink(NewSink(q, opts...))
	return log, q
}

func TestSinkMapping(t *testing.T) {
	tok := secret.New("7c1e-super-secret-token")
	hdr := http.Header{"Authorization": {"Bearer 7c1e-super-secret-token"}, "Accept": {"json"}}
	hdr["proxy-authorization"] = []string{"Basic 7c1e-super-secret-token"}
	tests := []struct {
		name string
		log  func(hclog.Logger)
		want []Entry
	}{
		{"info with logger name as category", func(l hclog.Logger) { l.Named("ws").Info("json result sent") },
			[]Entry{{Ts: "2026-06-11T09:14:03.512Z", Level: "info", Category: "ws", Message: "json result sent"}}},
		{"warn", func(l hclog.Logger) { l.Warn("disconnected", "attempt", 1) },
			[]Entry{{Ts: "2026-06-11T09:14:03.512Z", Level: "warn", Category: "stoker", Message: "disconnected attempt=1"}}},
		{"error", func(l hclog.Logger) { l.Error("upload failed", "error", errors.New("status 500")) },
			[]Entry{{Ts: "2026-06-11T09:14:03.512Z", Level: "error", Category: "stoker", Message: `upload failed error="status 500"`}}},
		{"debug and trace are not shipped", func(l hclog.Logger) { l.Debug("d"); l.Trace("t") }, nil},
		{"category key wins over name", func(l hclog.Logger) { l.Named("studio").Info("m", "category", "engine") },
			[]Entry{{Ts: "2026-06-11T09:14:03.512Z", Level: "info", Category: "engine", Message: "m"}}},
		{"job key", func(l hclog.Logger) { l.Info("m", "job", "job-1") },
			[]Entry{{Ts: "2026-06-11T09:14:03.512Z", Level: "info", Category: "stoker", Message: "m", JobID: "job-1"}}},
		{"job_id key from With", func(l hclog.Logger) { l.With("job_id", "job-2").Info("m", "k", "v") },
			[]Entry{{Ts: "2026-06-11T09:14:03.512Z", Level: "info", Category: "stoker", Message: "m k=v", JobID: "job-2"}}},
		{"secret value redacts itself", func(l hclog.Logger) { l.Info("hello sent", "auth", tok) },
			[]Entry{{Ts: "2026-06-11T09:14:03.512Z", Level: "info", Category: "stoker", Message: "hello sent auth=[redacted]"}}},
		{"raw string under a credential key", func(l hclog.Logger) { l.Info("m", "Authorization", "Bearer 7c1e-super-secret-token") },
			[]Entry{{Ts: "2026-06-11T09:14:03.512Z", Level: "info", Category: "stoker", Message: "m Authorization=[redacted]"}}},
		{"http header redacts authorization", func(l hclog.Logger) { l.Info("upgrade", "headers", hdr) },
			nil /* checked below by content */},
		{"dangling value", func(l hclog.Logger) { l.Info("m", "k", "v", "lonely") },
			[]Entry{{Ts: "2026-06-11T09:14:03.512Z", Level: "info", Category: "stoker", Message: "m k=v EXTRA_VALUE_AT_END=lonely"}}},
		{"hclog.Fmt", func(l hclog.Logger) { l.Info("m", "n", hclog.Fmt("%d-%s", 3, "x")) },
			[]Entry{{Ts: "2026-06-11T09:14:03.512Z", Level: "info", Category: "stoker", Message: "m n=3-x"}}},
		{"quoting", func(l hclog.Logger) { l.Info("m", "empty", "", "spaced", "a b") },
			[]Entry{{Ts: "2026-06-11T09:14:03.512Z", Level: "info", Category: "stoker", Message: `m empty="" spaced="a b"`}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, q := newLogger(t)
			tt.log(log)
			got := q.Drain()
			if tt.name == "http header redacts authorization" {
				if len(got) != 1 {
					t.Fatalf("got %d entries, want 1", len(got))
				}
				if strings.Contains(got[0].Message, "super-secret") || !strings.Contains(got[0].Message, "json") {
					t.Errorf("got message %q, want Authorization redacted and Accept kept", got[0].Message)
				}
				return
			}
			assertEntries(t, got, tt.want)
		})
	}
}

func TestSinkLevel(t *testing.T) {
	log, q := newLogger(t, SinkLevel(hclog.Warn))
	log.Info("no")
	log.Warn("yes")
	log.Error("yes")
	if got := len(q.Drain()); got != 2 {
		t.Errorf("got %d entries, want 2", got)
	}
}

// TestSinkNeverShipsToken logs a token every way a careless caller might and
// checks that no shipped byte contains it.
func TestSinkNeverShipsToken(t *testing.T) {
	const raw = "tok-9f2c-0123456789abcdef"
	v := secret.New(raw)
	log, q := newLogger(t)
	log.Info("a", "token", v)
	log.Info("b", "value", v)
	log.Info("c", "cfg", struct{ Token secret.Value }{v})
	log.Info("d", "auth_token", raw)
	log.Info("e", "registration_secret", raw)
	log.Info("f", "h", http.Header{"Authorization": {"Bearer " + raw}})
	log.With("authToken", raw).Info("g")
	log.Info("h", "err", fmt.Errorf("dial: %v", v))
	b, err := json.Marshal(q.Drain())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), raw) {
		t.Errorf("shipped batch contains the token: %s", b)
	}
}

func TestEntryJSON(t *testing.T) {
	tests := []struct {
		name string
		e    Entry
		want string
	}{
		{"without job", Entry{Ts: "2026-06-11T09:14:04.001Z", Level: "warn", Category: "ws", Message: "disconnected"},
			`{"ts":"2026-06-11T09:14:04.001Z","level":"warn","category":"ws","message":"disconnected"}`},
		{"with job", Entry{Ts: "2026-06-11T09:14:03.512Z", Level: "info", Category: "ws", Message: "json result sent", JobID: "job-311"},
			`{"ts":"2026-06-11T09:14:03.512Z","level":"info","category":"ws","message":"json result sent","jobId":"job-311"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(tt.e)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Errorf("got %s, want %s", b, tt.want)
			}
		})
	}
}
