package studio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/stokerhq/stoker/supervisor/internal/backoff"
	"github.com/stokerhq/stoker/supervisor/internal/logship"
	"github.com/stokerhq/stoker/supervisor/internal/protocol"
	"github.com/stokerhq/stoker/supervisor/internal/secret"
)

// JobRunner is implemented by the job runner (package jobs). The session
// never knows about engines.
type JobRunner interface {
	// Admit is called for an offer after the paused and busy checks and
	// claim validation, before accept. A non-nil error rejects the offer
	// with err.Error() as reason, e.g. when the engine's plugin cannot
	// serve or this node refuses the job. The reject carries no code,
	// unless the error (or one it wraps) has a method
	// RejectCode() protocol.RejectCode: then that code (busy for an engine
	// that is only briefly unavailable, so the job loses no attempt). It
	// must not block.
	Admit(claim *protocol.JobOfferClaim) error
	// RunJob runs an accepted job to its end and returns how it ended.
	// The client calls it on its jobs' goroutine, never the session's,
	// after a successful accept send, with currentJobId set. It must
	// report exactly one terminal outcome through rep (R5). When RunJob
	// returns, the client hands the Outcome to Config.JobDone, clears
	// currentJobId and releases the busy slot. RunJob logs the job's start with the
	// offer's job, game, asset, model and vram (the spec's §9.5 line; the
	// session logs only the offers it refuses).
	// ctx is cancelled when Run's ctx ends, or when [Client.Shutdown]'s
	// ctx ends before the job did; never when the socket drops: an
	// in-flight job keeps running (§5.2 step 8). Once ctx is cancelled,
	// RunJob reports the failure and returns promptly: Shutdown waits for
	// it.
	RunJob(ctx context.Context, claim *protocol.JobOfferClaim, rep Reporter) Outcome
}

// Outcome is how a job ended, as its runner returns it from RunJob.
type Outcome struct {
	// Err is the job's failure; nil when it completed.
	Err error
	// Retryable is the retryable flag of the fail reported for Err.
	Retryable bool
	// Reported says the outcome reached the studio: completeJson or fail
	// sent, or the binary result uploaded. The studio requeues a job whose
	// outcome never came once the socket that accepted it closes (§7.2).
	Reported bool
	// ReportErr is why the outcome could not be reported (nil when
	// Reported).
	ReportErr error
	// ResultBytes is the size of the binary result delivered (0 for a
	// JSON result and for a failure).
	ResultBytes int64
	// Elapsed is the job's time from the start of RunJob to its outcome
	// reported (or given up on).
	Elapsed time.Duration
}

// Slot is the node's one job slot (I-10) when the session shares it with
// another source of jobs (the agent's local API; package jobslot). The
// session takes it with TryAcquire, which must not block, right after its
// own busy check, and releases it exactly once per successful TryAcquire,
// when its own slot is released.
type Slot interface {
	TryAcquire() bool
	Release()
}

// Reporter delivers one job's terminal outcome over the session that
// accepted it (and, for binary results, HTTP). Its WebSocket sends fail with
// ErrSessionClosed once that session has ended; they never go out on a
// later session, where the studio would not know the job (R7).
type Reporter interface {
	// CompleteJSON sends completeJson. result must be a JSON object or
	// array; prompt is the full prompt (§7.4). A send failure is the job's
	// failure: no fail frame can follow on a dead socket. A result whose
	// frame would be over Config.MaxSendFrameBytes is not sent: the error
	// is a *FrameTooLargeError (errors.Is ErrFrameTooLarge), nothing is
	// reported and the session goes on, so the runner can fail the job
	// for good (the studio would refuse the frame from any node). A frame
	// over the limit only because of the prompt goes without the prompt.
	CompleteJSON(ctx context.Context, result json.RawMessage, prompt string) error
	// Upload posts the binary result as §7.1 multipart (parts prompt, ext,
	// image; filename <jobId>.<ext>; part content type from ext), streamed,
	// with 2 extra attempts on 5xx and transport errors, pausing 1 s ×
	// attempt (ctx-aware), and none on 4xx. open is called once per attempt
	// and returns a fresh reader of the bytes. Failure is an *UploadError
	// (or ctx's error); the runner then decides to Fail.
	Upload(ctx context.Context, ext, prompt string, open func() (io.ReadCloser, error)) error
	// Fail sends fail with the message and retryability.
	Fail(ctx context.Context, message string, retryable bool) error
}

// Config configures a Client. Zero durations mean the spec's defaults
// (§11), given in parentheses; tests shorten them.
type Config struct {
	// BaseURL is api_base_url (§1.2).
	BaseURL string
	// WorkerID and AuthToken are the approved credentials.
	WorkerID  string
	AuthToken secret.Value
	// Credentials, when set, is asked before every connect instead of
	// WorkerID/AuthToken, so the session can start before approval: an
	// empty answer means "not yet", and Run waits (I-8).
	Credentials func() (workerID string, token secret.Value)
	// ReconnectAttempts is ws_reconnect_attempts: consecutive failed
	// attempts before Run gives up; 0 means forever (default, LATER).
	ReconnectAttempts int
	// Capabilities is called for hello and for every heartbeat (LATER live
	// rebuild; it must be cheap, I-9). The session sets AutoEnabled from
	// the pause flag. Required.
	Capabilities func() protocol.WorkerCapabilities
	// Jobs admits and runs offers. Required.
	Jobs JobRunner
	// Slot, when set, is the node's job slot shared with other sources of
	// jobs: an offer while another source holds it is rejected busy. (nil:
	// the session's own slot is the node's)
	Slot Slot
	// JobDone, if set, is called with the Outcome of every job RunJob
	// ran, once it returned (counting the jobs is its business: the
	// agent's status page). It must not block.
	JobDone func(claim *protocol.JobOfferClaim, out Outcome)
	// Logs is shipped in logBatch frames after welcome; nil ships nothing.
	Logs *logship.Queue
	// Logger receives the session's lines (named "ws"); default discards.
	Logger hclog.Logger
	// HTTPClient is used for uploads (default: 60 s timeout).
	HTTPClient *http.Client

	HeartbeatInterval time.Duration // (5s)
	LogFlushInterval  time.Duration // (1s)
	ReadIdleTimeout   time.Duration // no application frame for this long ⇒ dead (20s, I-4)
	ConnectTimeout    time.Duration // TCP+TLS+upgrade (15s, I-6)
	CloseTimeout      time.Duration // sending the close frame (5s, I-6)
	// WriteTimeout bounds a frame write's lack of progress: each 32 KiB of
	// a frame must go within it, however long the whole frame takes; a
	// write that makes no progress for this long is a dead socket
	// (default 10s).
	WriteTimeout   time.Duration
	BackoffBase    time.Duration // (1s)
	BackoffMax     time.Duration // (30s)
	CredentialWait time.Duration // poll for missing credentials (1s)
	// UploadRetryPause is the pause unit between upload attempts (1s).
	UploadRetryPause time.Duration
	// MaxFrameBytes caps a frame from the studio; a larger one is a
	// protocol error (default 16 MiB).
	MaxFrameBytes int64
	// MaxSendFrameBytes caps a frame to the studio (default 16 MiB, the
	// dev studio's limit on what it reads; the spec names none, open point
	// 18). A larger frame is never sent: a studio refuses it with close
	// 1009 and would refuse it from any node. A JSON result over it fails
	// its job for good (see Reporter.CompleteJSON).
	MaxSendFrameBytes int64
	// MaxLogBatchBytes caps the entries of one logBatch frame (default 256
	// KiB): log shipping never comes near a frame limit, and a batch the
	// studio refuses anyway costs little.
	MaxLogBatchBytes int
	// UploadStallTimeout bounds an upload's lack of progress: it fails
	// when no byte of the body is taken, or no answer comes once the body
	// is sent, for this long, however long the whole upload takes
	// (default 60s, the spec's HTTP timeout). HTTPClient's own Timeout is
	// not applied to uploads, so a large result on a slow link is not cut
	// off at a fixed total.
	UploadStallTimeout time.Duration
	// NetDialContext, if set, dials the WebSocket's TCP connection
	// (default: a net.Dialer).
	NetDialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

// DefaultMaxFrameBytes is the default cap on a frame from and to the
// studio.
const DefaultMaxFrameBytes = 16 << 20

// DefaultMaxLogBatchBytes is the default cap on one logBatch's entries.
const DefaultMaxLogBatchBytes = 256 << 10

func (c *Config) setDefaults() error {
	if c.Capabilities == nil {
		return errors.New("studio: no capabilities")
	}
	if c.Jobs == nil {
		return errors.New("studio: no job runner")
	}
	if _, err := protocol.HTTPURL(c.BaseURL, protocol.RouteRegisterRequest); err != nil {
		return fmt.Errorf("studio: %w", err)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.HeartbeatInterval, protocol.HeartbeatInterval)
	def(&c.LogFlushInterval, protocol.LogFlushInterval)
	def(&c.ReadIdleTimeout, protocol.ReadIdleTimeout)
	def(&c.ConnectTimeout, protocol.ConnectTimeout)
	def(&c.CloseTimeout, protocol.CloseFrameTimeout)
	def(&c.WriteTimeout, 10*time.Second)
	def(&c.BackoffBase, protocol.BackoffBase)
	def(&c.BackoffMax, protocol.BackoffMax)
	def(&c.CredentialWait, protocol.CredentialWaitPoll)
	def(&c.UploadRetryPause, protocol.UploadRetryPause)
	if c.MaxFrameBytes <= 0 {
		c.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if c.MaxSendFrameBytes <= 0 {
		c.MaxSendFrameBytes = DefaultMaxFrameBytes
	}
	if c.MaxLogBatchBytes <= 0 {
		c.MaxLogBatchBytes = DefaultMaxLogBatchBytes
	}
	def(&c.UploadStallTimeout, protocol.HTTPTimeout)
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: protocol.HTTPTimeout}
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	return nil
}

// State is where the client's outer loop stands.
type State int

// States of the outer loop.
const (
	StateIdle               State = iota // Run not called yet
	StateWaitingCredentials              // no worker id / token yet (I-8)
	StateConnecting                      // dialling and upgrading
	StateAwaitingWelcome                 // hello sent
	StateWelcomed                        // session live
	StateBackoff                         // waiting before the next attempt
	StateStopped                         // Run returned after ctx ended
	StateAuthFailed                      // Run returned ErrAuthFailed
	StateFatal                           // Run returned a *FatalError
	StateGaveUp                          // Run returned ErrReconnectLimit
)

// String returns the state's name.
func (s State) String() string {
	switch s {
	case StateIdle:
		return "idle"
	case StateWaitingCredentials:
		return "waiting for credentials"
	case StateConnecting:
		return "connecting"
	case StateAwaitingWelcome:
		return "awaiting welcome"
	case StateWelcomed:
		return "welcomed"
	case StateBackoff:
		return "backing off"
	case StateStopped:
		return "stopped"
	case StateAuthFailed:
		return "auth failed"
	case StateFatal:
		return "fatal"
	case StateGaveUp:
		return "gave up"
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// Status is a snapshot for the local status page.
type Status struct {
	State State
	// Since is when State was entered.
	Since time.Time
	// Connected is true from the upgrade to the end of the session;
	// Welcomed from welcome to the end of the session.
	Connected bool
	Welcomed  bool
	WorkerID  string
	// Attempt is the consecutive failed attempt count (0 once welcomed).
	Attempt int
	// NextAttempt is when a backoff ends (zero when not backing off).
	NextAttempt time.Time
	// LastError describes how the last session ended (never a secret).
	LastError string
	// ServerTime is the welcome's serverTime, as text (§4.2.1).
	ServerTime string
	// CurrentJobID is the accepted job now running, if any.
	CurrentJobID string
	Paused       bool
	// Sessions counts sessions that reached welcome.
	Sessions int
	// OffersRefused counts offers answered with a reject; of their
	// rejects, RejectsCoalesced joined one already waiting for the same
	// job and RejectsDropped were not sent because the studio was not
	// reading (see refusals.go).
	OffersRefused, RejectsCoalesced, RejectsDropped uint64
}

// Client is the worker's studio session. Create it with New and call Run
// once; Shutdown, SetPaused, Paused and Status may be called from any
// goroutine.
type Client struct {
	cfg    Config
	log    hclog.Logger
	policy backoff.Policy
	// uploadClient is cfg.HTTPClient without its overall Timeout: an
	// upload is bounded by its progress (UploadStallTimeout) instead.
	uploadClient *http.Client

	paused atomic.Bool
	// busy is the one job slot (I-10), reserved by CAS in the offer
	// handler and released once the job's outcome is reported (or its
	// goroutine ends without one).
	busy atomic.Bool
	// finishing is set while a job's terminal report is being sent: the
	// studio may offer the next job before the send returns (it nudges
	// on receipt), and such an offer waits for the slot instead of being
	// rejected busy.
	finishing atomic.Bool
	// offerWaiting is set while one offer waits for a finishing slot.
	offerWaiting atomic.Bool
	slotMu       sync.Mutex    // guards slotFree
	slotFree     chan struct{} // closed and replaced whenever the slot is released
	ran          atomic.Bool
	// jobStarts takes admitted jobs to serveJobs, whose goroutine jobs
	// counts; Run closes it once no session is open, and waits for jobs
	// before returning.
	jobStarts chan jobStart
	jobs      sync.WaitGroup
	// jobsCtx is the context jobs run under, cancelled (cancelJobs) when
	// Run's ctx ends or Shutdown's ends first.
	jobsCtx    context.Context
	cancelJobs context.CancelCauseFunc
	// stopping is set by Shutdown: offers are refused as if paused.
	stopping atomic.Bool
	// endSessions, closed by Shutdown once no job runs, ends Run's loop.
	endSessions chan struct{}
	endOnce     sync.Once
	// loopDone is closed when Run's loop has returned (no session is
	// open); done when Run itself has (every job returned too).
	loopDone, done chan struct{}

	// Refused offers (see refusals.go), for the status page.
	refused, rejectsCoalesced, rejectsDropped atomic.Uint64
	// logLimit rate-limits the lines a studio can provoke per frame;
	// nullLog takes the lines it holds back.
	logLimit *logLimit
	nullLog  hclog.Logger

	mu     sync.Mutex // guards status
	status Status
}

// New checks cfg, applies defaults and returns a client. It starts nothing.
func New(cfg Config) (*Client, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	c := &Client{
		cfg:         cfg,
		log:         cfg.Logger.Named("ws"),
		logLimit:    newLogLimit(time.Now),
		nullLog:     hclog.NewNullLogger(),
		endSessions: make(chan struct{}),
		jobStarts:   make(chan jobStart, 1),
		loopDone:    make(chan struct{}),
		done:        make(chan struct{}),
		policy: backoff.Policy{
			Base:        cfg.BackoffBase,
			Max:         cfg.BackoffMax,
			MaxAttempts: cfg.ReconnectAttempts,
		},
	}
	c.jobsCtx, c.cancelJobs = context.WithCancelCause(context.Background())
	uc := *cfg.HTTPClient
	uc.Timeout = 0
	c.uploadClient = &uc
	c.status = Status{State: StateIdle, Since: time.Now()}
	return c, nil
}

// SetPaused sets the runtime pause flag (§9.2; never persisted). While
// paused, heartbeats carry autoEnabled:false and offers are rejected with
// code paused; a running job is not interrupted. Shutdown refuses offers
// the same way whatever the flag says.
func (c *Client) SetPaused(p bool) {
	if c.paused.Swap(p) != p {
		if p {
			c.log.Info("worker paused by operator; offers will be rejected")
		} else {
			c.log.Info("worker resumed by operator")
		}
	}
}

// Paused reports the pause flag.
func (c *Client) Paused() bool { return c.paused.Load() }

// offersOff says offers are refused with code paused: the operator paused
// the worker, or Shutdown began.
func (c *Client) offersOff() bool { return c.paused.Load() || c.stopping.Load() }

// Status returns a snapshot of the session state.
func (c *Client) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.status
	s.Paused = c.paused.Load()
	s.OffersRefused = c.refused.Load()
	s.RejectsCoalesced = c.rejectsCoalesced.Load()
	s.RejectsDropped = c.rejectsDropped.Load()
	return s
}

func (c *Client) update(f func(*Status)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f(&c.status)
}

func (c *Client) setState(st State) {
	c.update(func(s *Status) {
		if s.State != st {
			s.State, s.Since = st, time.Now()
		}
	})
}

func (c *Client) currentJob() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status.CurrentJobID
}

func (c *Client) setCurrentJob(id string) { c.update(func(s *Status) { s.CurrentJobID = id }) }

// releaseSlot clears currentJobId, frees the job slot and wakes offers
// waiting for it. Each job calls it exactly once (through a sync.Once).
func (c *Client) releaseSlot() {
	c.setCurrentJob("")
	c.slotMu.Lock()
	defer c.slotMu.Unlock()
	// The slot is free before finishing is cleared: an offer that found
	// it busy then sees either finishing (and waits on slotFree, closed
	// below) or a free slot (see handleOffer).
	c.unreserve()
	c.finishing.Store(false)
	if c.slotFree != nil {
		close(c.slotFree)
	}
	c.slotFree = make(chan struct{})
}

// reserve takes the session's slot and, when it is shared, the node's:
// false when either is held.
func (c *Client) reserve() bool {
	if !c.busy.CompareAndSwap(false, true) {
		return false
	}
	if c.cfg.Slot != nil && !c.cfg.Slot.TryAcquire() {
		c.busy.Store(false)
		return false
	}
	return true
}

// unreserve releases what reserve took.
func (c *Client) unreserve() {
	if c.cfg.Slot != nil {
		c.cfg.Slot.Release()
	}
	c.busy.Store(false)
}

// slotFreed returns a channel closed at the next release of the slot.
func (c *Client) slotFreed() <-chan struct{} {
	c.slotMu.Lock()
	defer c.slotMu.Unlock()
	if c.slotFree == nil {
		c.slotFree = make(chan struct{})
	}
	return c.slotFree
}

// capabilities returns a fresh snapshot with AutoEnabled from the pause flag.
func (c *Client) capabilities() protocol.WorkerCapabilities {
	caps := c.cfg.Capabilities()
	caps.AutoEnabled = !c.offersOff()
	return caps
}

func (c *Client) credentials() (string, secret.Value) {
	if c.cfg.Credentials != nil {
		return c.cfg.Credentials()
	}
	return c.cfg.WorkerID, c.cfg.AuthToken
}

// Run holds the session until ctx ends, Shutdown ends it, or the studio
// forbids reconnecting (§5.1). It returns nil when ctx ends or after
// Shutdown, an error wrapping ErrAuthFailed on an auth failure, a
// *FatalError on duplicate_worker / worker_deleted, and an error wrapping
// ErrReconnectLimit when ReconnectAttempts (if non-zero) consecutive
// attempts failed. The end of ctx is a hard stop: the running job is
// cancelled with it. In every case Run returns only after every job it
// started has returned. Run may be called only once.
func (c *Client) Run(ctx context.Context) error {
	if c.ran.Swap(true) {
		if c.stopping.Load() {
			return nil // Shutdown came first
		}
		return errors.New("studio: Run called twice")
	}
	defer close(c.done)
	defer context.AfterFunc(ctx, func() { c.cancelJobs(context.Cause(ctx)) })()
	defer c.jobs.Wait()
	c.jobs.Add(1)
	go c.serveJobs()
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { // ends with ctx, at the latest when Run returns
		select {
		case <-c.endSessions:
			stop()
		case <-ctx.Done():
		}
	}()
	err := c.loop(ctx)
	close(c.jobStarts) // every session has ended: no job starts any more
	close(c.loopDone)
	if ctx.Err() == nil && err != nil {
		c.log.Error("studio session stopped for good", "error", err)
	}
	if id := c.currentJob(); id != "" {
		c.log.Info("waiting for the running job to finish", "job", id)
	}
	return err
}

// Shutdown is the graceful stop (I-25), the first SIGTERM's: it refuses
// every offer from now on (code paused, and heartbeats say
// autoEnabled:false) and waits until no job holds the slot, then ends the
// session (close 1000, after a final log flush) and waits for Run to
// return. A job that is admitted but not yet accepted holds the slot, so
// it is waited for too.
//
// If ctx ends first, the running job is cancelled with ctx's cause (say,
// "drain timeout 30s passed"), and Shutdown waits for the job to report
// that failure over the still-open session before it ends it; the runner
// promises to return promptly once cancelled (see JobRunner.RunJob). The
// job is cancelled the same way if the session stops for good on its own
// while Shutdown waits, as no outcome can reach the studio any more.
//
// Shutdown returns nil when no job had to be cancelled, else ctx's error
// (or ErrSessionClosed when the session had stopped). Called before Run,
// it makes Run return at once. It may be called more than once.
func (c *Client) Shutdown(ctx context.Context) error {
	if !c.stopping.Swap(true) {
		c.log.Debug("shutting down: taking no new offers; waiting for the job slot")
	}
	if !c.ran.Swap(true) { // Run never started: nothing runs
		c.endOnce.Do(func() { close(c.endSessions) })
		close(c.loopDone)
		close(c.done)
		return nil
	}
	var err error
	if err = c.waitIdle(ctx.Done()); err != nil {
		if err == errShutdownCtx {
			err = ctx.Err()
			c.cancelJobs(context.Cause(ctx))
		} else {
			c.cancelJobs(err)
		}
		c.log.Debug("shutdown: cancelled the running job", "cause", context.Cause(c.jobsCtx))
		c.waitIdle(nil)
	}
	c.endOnce.Do(func() { close(c.endSessions) })
	<-c.done
	return err
}

// errShutdownCtx says Shutdown's ctx ended before the slot was free.
var errShutdownCtx = errors.New("studio: shutdown deadline")

// waitIdle waits until no job holds the slot. It gives up when stop is
// closed (errShutdownCtx) or the session loop ended for good
// (ErrSessionClosed, unless the slot is free by then).
func (c *Client) waitIdle(stop <-chan struct{}) error {
	for {
		freed := c.slotFreed()
		if !c.busy.Load() {
			return nil
		}
		select {
		case <-freed:
		case <-stop:
			return errShutdownCtx
		case <-c.loopDone:
			if !c.busy.Load() {
				return nil
			}
			if stop == nil { // the cancelled job has no session to report to
				<-c.done
				return nil
			}
			return fmt.Errorf("%w: the studio session stopped for good", ErrSessionClosed)
		}
	}
}

// jobDone hands a job's outcome to Config.JobDone.
func (c *Client) jobDone(claim *protocol.JobOfferClaim, out Outcome) {
	if c.cfg.JobDone != nil {
		c.cfg.JobDone(claim, out)
	}
}

func (c *Client) loop(ctx context.Context) error {
	attempt := 0
	waitingLogged := false
	for {
		if ctx.Err() != nil {
			c.setState(StateStopped)
			return nil
		}
		workerID, token := c.credentials()
		if workerID == "" || token.IsZero() {
			if !waitingLogged {
				c.log.Info("waiting for operator approval before opening the session")
				waitingLogged = true
			}
			c.setState(StateWaitingCredentials)
			sleep(ctx, c.cfg.CredentialWait)
			continue
		}
		waitingLogged = false

		out := c.runSession(ctx, workerID, token)
		c.update(func(s *Status) {
			s.Connected, s.Welcomed = false, false
			if out.err != nil {
				s.LastError = out.err.Error()
			}
		})
		switch out.kind {
		case outStopped:
			c.setState(StateStopped)
			return nil
		case outAuthFailed:
			c.setState(StateAuthFailed)
			return fmt.Errorf("%w: %v", ErrAuthFailed, out.err)
		case outFatal:
			c.setState(StateFatal)
			return out.err
		}
		if out.welcomed && !out.keepBackoff {
			attempt = 0 // I-7
		}
		attempt++
		if c.policy.Exhausted(attempt) {
			c.setState(StateGaveUp)
			c.log.Error("giving up after reconnect attempts", "attempts", attempt-1)
			return fmt.Errorf("%w after %d attempts: %v", ErrReconnectLimit, attempt-1, out.err)
		}
		d := c.policy.Delay(attempt)
		c.log.Warn(fmt.Sprintf("disconnected; reconnect attempt %d in %dms", attempt, d.Milliseconds()), "cause", errString(out.err))
		c.update(func(s *Status) {
			s.Attempt = attempt
			s.NextAttempt = time.Now().Add(d)
		})
		c.setState(StateBackoff)
		sleep(ctx, d)
		c.update(func(s *Status) { s.NextAttempt = time.Time{} })
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// sleep waits d or until ctx ends; it reports whether the full wait passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
