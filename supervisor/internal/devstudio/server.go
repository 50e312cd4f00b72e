package devstudio

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/hashicorp/go-hclog"

	"github.com/stokerhq/stoker/supervisor/internal/httpguard"
	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

// ErrNotLoopback is returned by New and Start for an address off loopback
// without Config.InsecureListen.
var ErrNotLoopback = errors.New("devstudio: address is off loopback, and the dev studio has no login for people: whoever reaches it submits jobs, reads results and approves workers")

// Config configures a Server. The zero value is a usable dev studio on a
// random loopback port with the synthetic catalog.
type Config struct {
	// Addr is the TCP address to listen on when Listener is nil
	// (default "127.0.0.1:0"). It must be a loopback one unless
	// InsecureListen is set.
	Addr string
	// InsecureListen allows an address (or Listener) off loopback. The
	// dev studio has no login for people: whoever reaches it submits
	// jobs, reads every prompt and result and approves workers. (false)
	InsecureListen bool
	// AllowedHosts are host names (without port) a request's Host header
	// may carry besides IP literals and "localhost"; any other is refused
	// (403), which stops DNS rebinding. (none)
	AllowedHosts []string
	// Listener, when set, is served instead of listening on Addr. The
	// server closes it on Close.
	Listener net.Listener
	// AutoApprove approves every registration request at once.
	AutoApprove bool
	// Catalog maps model ids to model sources (default DefaultCatalog()).
	Catalog *Catalog
	// MaxAttempts is how many attempts a job gets before it fails for good
	// (default 3).
	MaxAttempts int
	// FilesDir holds dev model files served at GET /dev/files/{name}
	// (plain file names only). Empty: that route answers 404.
	FilesDir string
	// ResultsDir is where binary results are streamed (default: a temporary
	// directory removed on Close).
	ResultsDir string
	// Logger receives the server's logs (default: discard).
	Logger hclog.Logger
	// Hooks inject faults for tests; see Hooks.
	Hooks Hooks
	// StaleAfter closes a session whose last heartbeat is older
	// (default protocol.StaleHeartbeat, 30s).
	StaleAfter time.Duration
	// StaleCheckEvery is how often sessions are checked for staleness
	// (default protocol.StaleCheckInterval, 10s).
	StaleCheckEvery time.Duration
	// MaxFrameBytes bounds one received WebSocket frame (default 16 MiB); a
	// larger frame closes the session with 1009.
	MaxFrameBytes int64
	// LogRing is how many log entries are kept per worker (default 1000).
	LogRing int
	// MaxUploadBytes bounds one binary result (default 8 GiB).
	MaxUploadBytes int64
}

// Server is a dev studio. Create it with New, then Start (or Serve), and
// Close it when done.
type Server struct {
	cfg     Config
	log     hclog.Logger
	catalog *Catalog
	// ownResults is true when ResultsDir is a temp dir the server removes.
	ownResults bool

	ctx    context.Context // the server's lifetime; cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the server starts

	httpSrv  *http.Server
	upgrader websocket.Upgrader
	cop      *http.CrossOriginProtection

	startOnce sync.Once
	closeOnce sync.Once
	closeErr  error

	mu sync.Mutex
	// The fields below are guarded by mu.
	closed   bool
	baseURL  string
	listener net.Listener
	jobs     map[string]*job
	order    []*job // jobs by submission order
	head     int    // order[:head] are all done (see advanceHeadLocked)
	nextJob  int
	workers  map[string]*worker
	sessions map[*session]struct{} // every open session, welcomed or not
	regs     map[string]*registration
	regOrder []*registration
	nextSess int
	stats    Stats
	// changed is closed and replaced on every state change, so waiters can
	// block on it (a broadcast condition).
	changed chan struct{}
}

// New checks cfg, applies defaults and returns a server that is not yet
// serving.
func New(cfg Config) (*Server, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Listener == nil && !cfg.InsecureListen && !httpguard.LoopbackListen(cfg.Addr) {
		return nil, fmt.Errorf("%w (%q)", ErrNotLoopback, cfg.Addr)
	}
	if cfg.Catalog == nil {
		cfg.Catalog = DefaultCatalog()
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = 3
	}
	if cfg.MaxAttempts < 0 {
		return nil, errors.New("devstudio: negative MaxAttempts")
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.StaleAfter == 0 {
		cfg.StaleAfter = protocol.StaleHeartbeat
	}
	if cfg.StaleCheckEvery == 0 {
		cfg.StaleCheckEvery = protocol.StaleCheckInterval
	}
	if cfg.MaxFrameBytes == 0 {
		cfg.MaxFrameBytes = 16 << 20
	}
	if cfg.LogRing == 0 {
		cfg.LogRing = 1000
	}
	if cfg.MaxUploadBytes == 0 {
		cfg.MaxUploadBytes = 8 << 30
	}
	if cfg.StaleAfter < 0 || cfg.StaleCheckEvery < 0 || cfg.MaxFrameBytes < 0 || cfg.LogRing < 0 || cfg.MaxUploadBytes < 0 {
		return nil, errors.New("devstudio: negative limit in config")
	}
	if cfg.FilesDir != "" {
		if fi, err := os.Stat(cfg.FilesDir); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("devstudio: FilesDir %q is not a directory", cfg.FilesDir)
		}
	}
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger.Named("devstudio"),
		catalog:  cfg.Catalog,
		jobs:     map[string]*job{},
		workers:  map[string]*worker{},
		sessions: map[*session]struct{}{},
		regs:     map[string]*registration{},
		changed:  make(chan struct{}),
		cop:      http.NewCrossOriginProtection(),
	}
	if cfg.ResultsDir == "" {
		dir, err := os.MkdirTemp("", "devstudio-results-")
		if err != nil {
			return nil, fmt.Errorf("devstudio: results dir: %w", err)
		}
		s.cfg.ResultsDir, s.ownResults = dir, true
	} else if err := os.MkdirAll(cfg.ResultsDir, 0o755); err != nil {
		return nil, fmt.Errorf("devstudio: results dir: %w", err)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.upgrader = websocket.Upgrader{
		Subprotocols: []string{protocol.Subprotocol},
		// Workers are not browsers; the bearer token is the credential.
		CheckOrigin:      func(*http.Request) bool { return true },
		HandshakeTimeout: protocol.ConnectTimeout,
	}
	s.httpSrv = &http.Server{
		Handler:           s.guard(s.routes()),
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          s.log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	return s, nil
}

// Start listens (on Config.Listener or Config.Addr) and serves in the
// background until Close; URL is valid once it returns. ctx bounds only the
// start (listening), not the server's life. It does not block.
func (s *Server) Start(ctx context.Context) error {
	l := s.cfg.Listener
	if l == nil {
		var err error
		var lc net.ListenConfig
		l, err = lc.Listen(ctx, "tcp", s.cfg.Addr)
		if err != nil {
			return fmt.Errorf("devstudio: listen: %w", err)
		}
	}
	if err := s.bind(l); err != nil {
		l.Close()
		return err
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.httpSrv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("serve ended", "error", err)
		}
	}()
	return nil
}

// Serve serves on l and blocks until Close; it then returns
// http.ErrServerClosed (or the accept error that stopped it). Use Start
// for the non-blocking form.
func (s *Server) Serve(l net.Listener) error {
	if err := s.bind(l); err != nil {
		return err
	}
	return s.httpSrv.Serve(l)
}

func (s *Server) bind(l net.Listener) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("devstudio: server closed")
	}
	if s.listener != nil {
		return errors.New("devstudio: already serving")
	}
	// A name that resolved off loopback, or a Listener from the caller.
	if !httpguard.LoopbackAddr(l.Addr()) {
		if !s.cfg.InsecureListen {
			return fmt.Errorf("%w (bound %s)", ErrNotLoopback, l.Addr())
		}
		s.log.Warn("serving off loopback: the dev studio has no login; whoever reaches it submits jobs, reads results and approves workers", "addr", l.Addr().String())
	}
	s.listener = l
	s.baseURL = "http://" + l.Addr().String()
	s.notifyLocked()
	s.startOnce.Do(func() {
		s.wg.Add(1)
		go s.staleLoop()
	})
	return nil
}

// URL is the server's base URL, e.g. http://127.0.0.1:41234 (no trailing
// slash); empty before Start or Serve. Workers use it as their studio base.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.baseURL
}

// Close stops serving, closes every session abruptly, waits for the
// server's goroutines and removes a temporary results directory. It is safe
// to call more than once; later calls return the first result.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		sessions := make([]*session, 0, len(s.sessions))
		for ss := range s.sessions {
			sessions = append(sessions, ss)
		}
		s.mu.Unlock()
		s.cancel()
		err := s.httpSrv.Close()
		for _, ss := range sessions {
			ss.drop()
		}
		s.wg.Wait()
		if s.ownResults {
			if rerr := os.RemoveAll(s.cfg.ResultsDir); err == nil {
				err = rerr
			}
		}
		s.mu.Lock()
		s.notifyLocked()
		s.mu.Unlock()
		s.closeErr = err
	})
	return s.closeErr
}

// notifyLocked wakes every waiter of WaitJob/WaitWorker.
func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// staleLoop closes sessions whose last heartbeat is older than StaleAfter
// (the DO alarm of §5.4).
func (s *Server) staleLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.StaleCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case now := <-t.C:
			s.mu.Lock()
			var stale []*session
			for ss := range s.sessions {
				if now.Sub(ss.lastBeatLocked()) > s.cfg.StaleAfter {
					stale = append(stale, ss)
				}
			}
			for _, ss := range stale {
				s.log.Info("closing stale session", "worker", ss.workerID)
				ss.closeLocked(protocol.CloseNormal, "heartbeat timeout")
			}
			s.mu.Unlock()
		}
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("devstudio: crypto/rand: %v", err)) // never fails on supported platforms
	}
	return hex.EncodeToString(b)
}

// hashHex is hex sha256 of s.
func hashHex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// sameHash compares two hex hashes in constant time.
func sameHash(a, b string) bool {
	return len(a) == len(b) && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// bearer returns the token of an "Authorization: Bearer <token>" header.
func bearer(r *http.Request) (string, bool) {
	const prefix = "Bearer "
	h := r.Header.Get("Authorization")
	if len(h) <= len(prefix) || h[:len(prefix)] != prefix {
		return "", false
	}
	return h[len(prefix):], true
}
