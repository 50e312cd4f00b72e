package studio

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"go.uber.org/goleak"

	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

// TestMain fails the package if any test leaves a goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestReconnectCyclesLeakNothing runs 100 sessions that each end a
// different way and checks that no goroutine survives Run.
func TestReconnectCyclesLeakNothing(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	st := newTestStudio(t)
	r := newRunner()
	logs := &syncBuffer{}
	cfg := testConfig(st, r, logs)
	cfg.HeartbeatInterval = 1e6
	cfg.LogFlushInterval = 1e6
	cfg.Logs = newFloodQueue(10)
	tr := &http.Transport{}
	cfg.HTTPClient = &http.Client{Transport: tr}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()

	const cycles = 100
	for i := 0; i < cycles; i++ {
		sc := st.accept(t)
		sc.welcome(t)
		switch i % 4 {
		case 0:
			sc.drop()
		case 1:
			sc.send(t, protocol.Error{Code: protocol.CodeInternalError, Message: "x"})
		case 2:
			sc.sendRaw(t, 1, []byte("{garbage"))
		case 3:
			nextOf[protocol.Heartbeat](t, sc)
			sc.ws.Close()
		}
		sc.waitClosed(t)
		sc.ws.Close()
	}
	st.accept(t).welcome(t)
	eventually(t, "the last session welcomed", func() bool { return c.Status().Sessions == cycles+1 })
	cancel()
	if err := waitFor(t, done, "Run to return"); err != nil {
		t.Fatalf("Run = %v", err)
	}
	tr.CloseIdleConnections()
	st.srv.Close()
}

func TestReconnectAttemptsCap(t *testing.T) {
	st := newTestStudio(t)
	st.setUpgrade(func(n int, w http.ResponseWriter, r *http.Request) bool {
		http.Error(w, "down", http.StatusBadGateway)
		return true
	})
	w := startWorker(t, st, func(c *Config) { c.ReconnectAttempts = 3 })
	err := w.result(t)
	if !errors.Is(err, ErrReconnectLimit) {
		t.Fatalf("Run = %v, want ErrReconnectLimit", err)
	}
	if n := st.attempts.Load(); n != 4 {
		t.Errorf("%d attempts, want 4 (the first and 3 retries)", n)
	}
	if s := w.c.Status(); s.State != StateGaveUp {
		t.Errorf("state = %v", s.State)
	}
}

// TestWelcomeResetsAttempts covers I-7: with a cap of 2, two failures, a
// welcomed session that drops (one attempt), and one more failure must not
// give up; without the reset the drop would have been attempt 3.
func TestWelcomeResetsAttempts(t *testing.T) {
	st := newTestStudio(t)
	st.setUpgrade(func(n int, w http.ResponseWriter, r *http.Request) bool {
		switch n {
		case 1, 2, 4:
			http.Error(w, "down", http.StatusServiceUnavailable)
			return true
		}
		return false
	})
	w := startWorker(t, st, func(c *Config) { c.ReconnectAttempts = 2 })
	sc := st.accept(t) // connect 3
	sc.welcome(t)
	sc.drop()
	st.accept(t).welcome(t) // connect 5
	eventually(t, "two welcomed sessions", func() bool { return w.c.Status().Sessions == 2 })
}

// TestProtocolViolationKeepsBackoff: a studio that welcomes and then ends
// every session with protocol_violation does not get a reset counter, so a
// cap still applies.
func TestProtocolViolationKeepsBackoff(t *testing.T) {
	st := newTestStudio(t)
	w := startWorker(t, st, func(c *Config) { c.ReconnectAttempts = 2 })
	for i := 0; i < 3; i++ {
		sc := st.accept(t)
		sc.welcome(t)
		sc.send(t, protocol.Error{Code: protocol.CodeProtocolViolation, Message: "accept for unknown jobId"})
	}
	if err := w.result(t); !errors.Is(err, ErrReconnectLimit) {
		t.Fatalf("Run = %v, want ErrReconnectLimit", err)
	}
}

func TestHeartbeatsRebuildCapabilities(t *testing.T) {
	st := newTestStudio(t)
	var calls = make(chan struct{}, 1000)
	w := startWorker(t, st, func(c *Config) {
		c.HeartbeatInterval = 2e6
		c.Capabilities = func() protocol.WorkerCapabilities {
			calls <- struct{}{}
			caps := testCaps()
			caps.VramThresholdGb = float32(len(calls))
			return caps
		}
	})
	sc := st.accept(t)
	sc.welcome(t)
	a := nextOf[protocol.Heartbeat](t, sc)
	b := nextOf[protocol.Heartbeat](t, sc)
	if a.Capabilities.VramThresholdGb == b.Capabilities.VramThresholdGb {
		t.Error("heartbeats carry the same snapshot; want a fresh one per tick (LATER)")
	}
	_ = w
}

func TestNewRejectsBadConfig(t *testing.T) {
	good := Config{BaseURL: "http://127.0.0.1:1/", Capabilities: testCaps, Jobs: newRunner()}
	tests := []struct {
		name string
		mod  func(*Config)
	}{
		{"no capabilities", func(c *Config) { c.Capabilities = nil }},
		{"no runner", func(c *Config) { c.Jobs = nil }},
		{"bad url", func(c *Config) { c.BaseURL = "ftp://x/" }},
		{"no host", func(c *Config) { c.BaseURL = "http:///" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.mod(&cfg)
			if _, err := New(cfg); err == nil {
				t.Error("New accepted a bad config")
			}
		})
	}
	if _, err := New(good); err != nil {
		t.Errorf("New(good) = %v", err)
	}
}
