// Package registration is the worker's operator-approved registration (spec
// §2, invariants I-18 and I-19) and the identity files it keeps in the state
// directory.
//
// A worker without credentials generates an install id and a registration
// secret from the OS CSPRNG, posts a register request carrying only the
// SHA-256 of the secret's hex text, and polls the request with the secret as
// bearer until the operator approves or rejects it. Approval stores the
// worker id and auth token (owner-only file) and registration never polls
// again: the studio mints a fresh token on every approved poll, so a second
// poll would invalidate the first token.
//
// The package is used by the agent's start-up (Register blocks until
// approval), by `stoker register --reset` (Reset) and by status output
// (Load). It never logs a secret.
package registration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/stokerhq/stoker/supervisor/internal/protocol"
	"github.com/stokerhq/stoker/supervisor/internal/secret"
)

// Config is what Register needs.
type Config struct {
	// BaseURL is api_base_url (§1.2).
	BaseURL string
	// StateDir holds the registration file (created 0700 if missing).
	StateDir string
	// Capabilities returns the snapshot sent with the request; Register
	// sets AutoEnabled to true as the reference does (§2.2).
	Capabilities func() protocol.WorkerCapabilities
	// UserAgent is sent as userAgent (default "studio-worker/" +
	// Capabilities().AgentVersion).
	UserAgent string
	// PollInterval is the time between ticks (default 30s, §2.4).
	PollInterval time.Duration
	// HTTPClient makes the calls (default: a client with the spec's 60 s
	// timeout).
	HTTPClient *http.Client
	// Logger receives progress lines (default: discard). The request id is
	// logged at info level for the operator.
	Logger hclog.Logger
}

// ErrRejected is wrapped by the error Register returns when the operator
// rejected the request (now or in an earlier run).
var ErrRejected = errors.New("registration rejected by the operator; run `stoker register --reset` to request again")

// RejectedError carries the operator's reason.
type RejectedError struct{ Reason string }

func (e *RejectedError) Error() string {
	if e.Reason == "" {
		return ErrRejected.Error()
	}
	return fmt.Sprintf("%v (reason: %s)", ErrRejected, e.Reason)
}

// Unwrap makes errors.Is(err, ErrRejected) true.
func (e *RejectedError) Unwrap() error { return ErrRejected }

// HTTPError is a non-2xx answer from the studio. Body is at most 300
// characters of the response.
type HTTPError struct {
	Op     string
	Status int
	Body   string
}

func (e *HTTPError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("%s: status %d", e.Op, e.Status)
	}
	return fmt.Sprintf("%s: status %d: %s", e.Op, e.Status, e.Body)
}

const maxErrorBody = 300

func (c *Config) defaults() error {
	if c.StateDir == "" {
		return errors.New("registration: no state dir")
	}
	if c.Capabilities == nil {
		return errors.New("registration: no capabilities")
	}
	if _, err := protocol.HTTPURL(c.BaseURL, protocol.RouteRegisterRequest); err != nil {
		return fmt.Errorf("registration: %w", err)
	}
	if c.PollInterval <= 0 {
		c.PollInterval = protocol.RegistrationPollInterval
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: protocol.HTTPTimeout}
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	return nil
}

// Register returns the worker's credentials, registering first if needed. It
// blocks until the operator approves, the request is rejected (an error
// wrapping ErrRejected), the state cannot be read or written, or ctx ends
// (an error wrapping ctx.Err(); no request is left half-applied to the
// state). Credentials already stored are returned at once with no HTTP.
//
// Each tick makes at most one HTTP call; the first runs at once, the next
// after PollInterval. Transient failures (network, 429, 5xx, a 401 on the
// poll, an unreadable body) are logged and retried on the next tick with the
// request kept.
func Register(ctx context.Context, cfg Config) (Credentials, error) {
	if err := cfg.defaults(); err != nil {
		return Credentials{}, err
	}
	r := &registrar{cfg: cfg, log: cfg.Logger.Named("registration")}
	for {
		creds, done, err := r.tick(ctx)
		if err != nil || done {
			return creds, err
		}
		t := time.NewTimer(cfg.PollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return Credentials{}, fmt.Errorf("registration: shutdown before approval: %w", ctx.Err())
		case <-t.C:
		}
	}
}

type registrar struct {
	cfg Config
	log hclog.Logger
	// loggedPending keeps the operator hint to once per request id.
	loggedPending string
}

// tick does one step. done is true with credentials on approval; a non-nil
// error ends Register; otherwise the caller waits and ticks again.
func (r *registrar) tick(ctx context.Context) (Credentials, bool, error) {
	if err := ctx.Err(); err != nil {
		return Credentials{}, false, fmt.Errorf("registration: shutdown before approval: %w", err)
	}
	s, err := load(r.cfg.StateDir)
	if err != nil {
		return Credentials{}, false, fmt.Errorf("registration: %w", err)
	}
	switch s.phase() {
	case Approved:
		return Credentials{WorkerID: s.WorkerID, AuthToken: secret.New(s.AuthToken)}, true, nil
	case Rejected:
		return Credentials{}, false, &RejectedError{Reason: s.RejectReason}
	case Pending:
		return r.poll(ctx, s)
	}
	return Credentials{}, false, r.request(ctx, s)
}

// request posts a register request (§2.2) from a pristine state.
func (r *registrar) request(ctx context.Context, s *state) error {
	changed := false
	if s.InstallID == "" {
		id, err := newInstallID()
		if err != nil {
			return fmt.Errorf("registration: %w", err)
		}
		s.InstallID, changed = id, true
	}
	if s.RequestID != "" && s.RegistrationSecret == "" {
		// A request id without its secret can never be polled; start over.
		r.log.Warn("dropping a registration request that has no secret", "request_id", s.RequestID)
		s.RequestID, changed = "", true
	}
	if s.RegistrationSecret == "" {
		sec, err := newSecret()
		if err != nil {
			return fmt.Errorf("registration: %w", err)
		}
		s.RegistrationSecret, changed = sec, true
	}
	if changed {
		// Persist before the POST: a failed POST keeps the secret (§2.1).
		if err := save(r.cfg.StateDir, s); err != nil {
			return fmt.Errorf("registration: %w", err)
		}
	}
	caps := r.cfg.Capabilities()
	caps.AutoEnabled = true
	ua := r.cfg.UserAgent
	if ua == "" {
		ua = "studio-worker/" + caps.AgentVersion
	}
	body, err := json.Marshal(protocol.RegisterRequest{
		InstallID:              s.InstallID,
		RegistrationSecretHash: protocol.HashSecret(s.RegistrationSecret),
		Capabilities:           caps,
		UserAgent:              ua,
	})
	if err != nil {
		return fmt.Errorf("registration: encode request: %w", err)
	}
	u, err := protocol.HTTPURL(r.cfg.BaseURL, protocol.RouteRegisterRequest)
	if err != nil {
		return fmt.Errorf("registration: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("registration: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	var resp protocol.RegisterResponse
	if err := r.do(req, "register request", &resp); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("registration: shutdown during register request: %w", ctx.Err())
		}
		r.log.Warn("register request failed; retrying", "error", err, "retry_in", r.cfg.PollInterval)
		return nil
	}
	if resp.RequestID == "" {
		r.log.Warn("register request answered without a requestId; retrying", "retry_in", r.cfg.PollInterval)
		return nil
	}
	s.RequestID = resp.RequestID
	if err := save(r.cfg.StateDir, s); err != nil {
		return fmt.Errorf("registration: %w", err)
	}
	r.logPending(s)
	return nil
}

func (r *registrar) logPending(s *state) {
	if r.loggedPending == s.RequestID {
		return
	}
	r.loggedPending = s.RequestID
	r.log.Info("waiting for operator approval; approve this request in the studio",
		"request_id", s.RequestID, "install_id", s.InstallID)
}

// poll asks about the pending request (§2.3).
func (r *registrar) poll(ctx context.Context, s *state) (Credentials, bool, error) {
	r.logPending(s)
	u, err := protocol.HTTPURL(r.cfg.BaseURL, protocol.RouteRegisterRequestStatus(s.RequestID))
	if err != nil {
		return Credentials{}, false, fmt.Errorf("registration: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Credentials{}, false, fmt.Errorf("registration: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+s.RegistrationSecret)
	var resp protocol.PollResponse
	err = r.do(req, "poll registration", &resp)
	var he *HTTPError
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return Credentials{}, false, fmt.Errorf("registration: shutdown during poll: %w", ctx.Err())
	case errors.As(err, &he) && he.Status == http.StatusNotFound:
		// The studio no longer knows the request: drop it and its secret;
		// the next tick posts a fresh request with a fresh secret (I-18).
		r.log.Warn("registration request unknown to the studio; requesting again", "request_id", s.RequestID)
		s.RequestID, s.RegistrationSecret = "", ""
		if err := save(r.cfg.StateDir, s); err != nil {
			return Credentials{}, false, fmt.Errorf("registration: %w", err)
		}
		return Credentials{}, false, nil
	default:
		// 401 is transient on purpose (open point 5): the reference code
		// keeps the request, and keeping it loses nothing — if the studio
		// has really forgotten it, it answers 404 and we start over then.
		// 429, other statuses, network errors and bad bodies are transient.
		r.log.Warn("registration poll failed; retrying", "request_id", s.RequestID, "error", err, "retry_in", r.cfg.PollInterval)
		return Credentials{}, false, nil
	}
	switch resp.Status {
	case protocol.StatusApproved:
		s.WorkerID, s.AuthToken = resp.WorkerID, resp.AuthToken
		s.RequestID, s.RegistrationSecret = "", ""
		s.Rejected, s.RejectReason = false, ""
		if err := save(r.cfg.StateDir, s); err != nil {
			// Nothing is lost by failing here: the request is still pending
			// on disk, and the studio mints a fresh token on the next
			// approved poll.
			return Credentials{}, false, fmt.Errorf("registration: store credentials: %w", err)
		}
		r.log.Info("registration approved", "worker_id", s.WorkerID)
		return Credentials{WorkerID: s.WorkerID, AuthToken: secret.New(s.AuthToken)}, true, nil
	case protocol.StatusRejected:
		s.RequestID, s.RegistrationSecret = "", ""
		s.Rejected, s.RejectReason = true, resp.Reason
		if err := save(r.cfg.StateDir, s); err != nil {
			return Credentials{}, false, fmt.Errorf("registration: %w", err)
		}
		r.log.Error("registration rejected by the operator; run `stoker register --reset` to request again", "reason", resp.Reason)
		return Credentials{}, false, &RejectedError{Reason: resp.Reason}
	}
	return Credentials{}, false, nil // pending
}

// do sends req and decodes a 2xx JSON body into out. A non-2xx answer is
// an *HTTPError.
func (r *registrar) do(req *http.Request, op string, out any) error {
	resp, err := r.cfg.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return &HTTPError{Op: op, Status: resp.StatusCode, Body: strings.TrimSpace(string(b))}
	}
	// A registration answer is tiny; refuse to read a hostile flood.
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(out); err != nil {
		return fmt.Errorf("%s: decode answer: %w", op, err)
	}
	return nil
}
