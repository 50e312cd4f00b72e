package localapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stokerhq/stoker/supervisor/internal/httpguard"
)

// Config configures a Server.
type Config struct {
	// Addr is the TCP address to listen on, e.g. "127.0.0.1:8710" (the
	// agent's `listen` key); port 0 picks a free port. Required.
	Addr string
	// Source supplies what every route shows. Required.
	Source Source
	// Controls receives pause and resume. Required.
	Controls Controls
	// Resident lists the plugins' resident models for GET /v1/resident.
	// (none: the route answers 404)
	Resident ResidentSource
	// TokenFile is the bearer token's file (the agent's
	// <state_dir>/local-api-token); New creates it, owner-only, with a
	// random token when it does not exist. Required.
	TokenFile string
	// Logger receives the server's lines. (a null logger)
	Logger hclog.Logger
	// AllowedHosts are host names (without port) a request's Host header
	// may carry besides IP literals and "localhost", for an operator who
	// reaches the node by name. (none)
	AllowedHosts []string
	// ShutdownTimeout bounds Close's wait for requests in flight before
	// their connections are cut. (5s)
	ShutdownTimeout time.Duration
	// Now is the clock, for uptime. (time.Now)
	Now func() time.Time
	// Collectors are served on /metrics beside the snapshot's metrics and
	// the process's (the agent gives its Tally, for the job duration and
	// download histograms). (none)
	Collectors []prometheus.Collector
	// Routes are more routes, served by other packages (the local jobs
	// APIs: the reference's /image and the OpenAI-compatible /v1/...),
	// behind the same Host check and, by their Access, the same token.
	// (none)
	Routes []Route
}

// Route is a route another package serves on this server.
type Route struct {
	// Pattern is its net/http ServeMux pattern, with the method:
	// "POST /image", "DELETE /models/{id}".
	Pattern string
	Handler http.Handler
	// Access says who may call it.
	Access Access
}

// Access says who may call a Route.
type Access int

const (
	// ReadAccess is the GET routes' rule: a peer on this machine needs
	// no token, a peer elsewhere needs it.
	ReadAccess Access = iota
	// JobAccess is for routes that run jobs or change the model catalog:
	// every peer needs the bearer token (the status page's key does not
	// do), a cross-origin browser request is refused, and the server's
	// write timeout is lifted (a job answers when it is done; the client's
	// leaving cancels it). The handler bounds its own body.
	JobAccess
)

// maxPostBody bounds what a pause or resume request may carry.
const maxPostBody = 4 << 10

// refusalLogEvery is how often a refused request is logged at most; the
// ones in between are counted and the count goes with the next line, so a
// scanner or a misconfigured scraper cannot flood the log.
const refusalLogEvery = 10 * time.Second

// Server is the local API. Create it with New, then Start it once; Close
// stops it.
type Server struct {
	cfg     Config
	log     hclog.Logger
	httpSrv *http.Server
	cop     *http.CrossOriginProtection
	page    *page
	metrics http.Handler
	token   string // the bearer token, from Config.TokenFile
	// pageKey is what the status page, served to a peer on this machine,
	// carries for its pause and resume buttons: random per process, so it
	// is never the file's token, and accepted from loopback peers only.
	pageKey string

	logMu      sync.Mutex // guards lastLogged and suppressed
	lastLogged time.Time
	suppressed int

	mu       sync.Mutex // guards addr, started and closed
	addr     net.Addr
	started  bool
	closed   bool
	wg       sync.WaitGroup // the serve goroutine
	once     sync.Once
	closeErr error
}

// New checks cfg, applies defaults and returns a server. It starts
// nothing.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.Addr == "":
		return nil, errors.New("localapi: Addr is required")
	case cfg.Source == nil:
		return nil, errors.New("localapi: Source is required")
	case cfg.Controls == nil:
		return nil, errors.New("localapi: Controls is required")
	case cfg.TokenFile == "":
		return nil, errors.New("localapi: TokenFile is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 5 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	pg, err := newPage()
	if err != nil {
		return nil, err
	}
	token, err := loadToken(cfg.TokenFile)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger.Named("localapi"), cop: http.NewCrossOriginProtection(), page: pg,
		token: token, pageKey: randomHex(32)}
	if s.metrics, err = newMetricsHandler(cfg.Source, cfg.Now, s.log, cfg.Collectors); err != nil {
		return nil, fmt.Errorf("localapi: metrics: %w", err)
	}
	s.httpSrv = &http.Server{
		Handler:           s.access(s.routes()),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          s.log.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug}),
	}
	return s, nil
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.handlePage)
	mux.HandleFunc("GET /v1/status", s.handleStatus)
	mux.Handle("GET /metrics", s.metrics)
	mux.HandleFunc("GET /v1/resident", s.handleResident)
	mux.HandleFunc("POST /v1/pause", s.guard(func() { s.cfg.Controls.SetPaused(true) }))
	mux.HandleFunc("POST /v1/resume", s.guard(func() { s.cfg.Controls.SetPaused(false) }))
	mux.HandleFunc("GET /healthz", s.handleHealthz)
	mux.HandleFunc("GET /readyz", s.handleReadyz)
	for _, rt := range s.cfg.Routes {
		h := rt.Handler
		if rt.Access == JobAccess {
			h = s.jobAccess(h)
		}
		mux.Handle(rt.Pattern, h)
	}
	return mux
}

// jobAccess applies JobAccess's checks before a job route runs.
func (s *Server) jobAccess(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.cop.Check(r); err != nil {
			s.refuse(w, r, &httpguard.Refusal{Status: http.StatusForbidden, Msg: "cross-origin request refused"})
			return
		}
		if err := s.checkToken(r, false); err != nil {
			s.refuse(w, r, err)
			return
		}
		// A job answers when it is done, minutes later for a big one.
		http.NewResponseController(w).SetWriteDeadline(time.Time{})
		next.ServeHTTP(w, r)
	})
}

// Start listens on Config.Addr and serves in the background. It returns
// once the listener is bound (Addr then reports it) or with the listen
// error. ctx bounds the listen only; Close stops serving. Start may be
// called once.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("localapi: already started")
	}
	if s.closed {
		return errors.New("localapi: closed")
	}
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("localapi: listen: %w", err)
	}
	s.started, s.addr = true, l.Addr()
	if !httpguard.LoopbackAddr(l.Addr()) {
		s.log.Warn("the local API is bound off loopback: requests from other machines need the bearer token, on every route",
			"addr", l.Addr().String(), "token_file", s.cfg.TokenFile)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.httpSrv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("serve ended", "error", err)
		}
	}()
	s.log.Info("local API listening", "url", "http://"+l.Addr().String()+"/")
	return nil
}

// Addr is the bound address, or nil before Start.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Close stops serving: it stops accepting, lets requests in flight finish
// for up to Config.ShutdownTimeout, cuts what is left, and waits for the
// server's goroutines. It is safe to call more than once, and before
// Start; later calls return the first result.
func (s *Server) Close() error {
	s.once.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
		defer cancel()
		err := s.httpSrv.Shutdown(ctx)
		if errors.Is(err, context.DeadlineExceeded) {
			err = s.httpSrv.Close()
		}
		s.wg.Wait()
		s.closeErr = err
	})
	return s.closeErr
}

// statusBody is the /v1/status answer: the snapshot and the two figures
// derived at request time.
type statusBody struct {
	Snapshot
	UptimeSeconds float64   `json:"uptimeSeconds"`
	Now           time.Time `json:"now"`
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	snap := s.cfg.Source.Snapshot()
	now := s.cfg.Now()
	writeJSON(w, http.StatusOK, statusBody{Snapshot: snap, UptimeSeconds: uptime(&snap, now).Seconds(), Now: now})
}

func (s *Server) handlePage(w http.ResponseWriter, r *http.Request) {
	snap := s.cfg.Source.Snapshot()
	// Only a person on this machine gets the key the buttons post with;
	// a peer elsewhere came with the token and can post with it.
	key := ""
	if httpguard.LoopbackPeer(r.RemoteAddr) {
		key = s.pageKey
	}
	var b bytes.Buffer
	if err := s.page.render(&b, &snap, s.cfg.Now(), key); err != nil {
		s.log.Error("status page", "error", err)
		http.Error(w, "status page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	// Everything the page needs is inline; nothing else may load, and no
	// other site may frame it.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	w.Write(b.Bytes())
}

// pauseBody is the pause/resume answer.
type pauseBody struct {
	Paused bool `json:"paused"`
}

// errorBody is every error answer from a JSON route.
type errorBody struct {
	Error string `json:"error"`
}

// access applies the checks every route shares, before any route runs:
// the Host check (403), and, for a peer on another machine, the bearer
// token (401).
func (s *Server) access(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := httpguard.CheckHost(r, s.cfg.AllowedHosts); err != nil {
			s.refuse(w, r, err)
			return
		}
		if !httpguard.LoopbackPeer(r.RemoteAddr) {
			if err := s.checkToken(r, false); err != nil {
				s.refuse(w, r, err)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// guard wraps a state-changing action with the checks the package doc
// describes, runs it, and answers the pause flag as JSON.
func (s *Server) guard(action func()) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := s.checkPost(r); err != nil {
			s.refuse(w, r, err)
			return
		}
		action()
		writeJSON(w, http.StatusOK, pauseBody{Paused: s.cfg.Controls.Paused()})
	}
}

// refuse answers a refused request with its JSON error, and logs it
// (rate-limited: see refusalLogEvery).
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, err error) {
	status := httpguard.StatusOf(err)
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="stoker"`)
	}
	writeJSON(w, status, errorBody{Error: "localapi: " + err.Error()})
	now := s.cfg.Now()
	s.logMu.Lock()
	if !s.lastLogged.IsZero() && now.Sub(s.lastLogged) < refusalLogEvery {
		s.suppressed++
		s.logMu.Unlock()
		return
	}
	n := s.suppressed
	s.lastLogged, s.suppressed = now, 0
	s.logMu.Unlock()
	s.log.Warn("refused a local API request", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr,
		"status", status, "error", err, "refused_since_last_line", n)
}

// checkToken wants "Authorization: Bearer <token>" with the file's token,
// or, when pageKey is set and the peer is on this machine, the status
// page's key.
func (s *Server) checkToken(r *http.Request, pageKey bool) error {
	const prefix = "Bearer "
	h := r.Header.Get("Authorization")
	if len(h) > len(prefix) && strings.EqualFold(h[:len(prefix)], prefix) {
		got := strings.TrimSpace(h[len(prefix):])
		if sameSecret(got, s.token) || pageKey && httpguard.LoopbackPeer(r.RemoteAddr) && sameSecret(got, s.pageKey) {
			return nil
		}
		return &httpguard.Refusal{Status: http.StatusUnauthorized, Msg: "wrong bearer token"}
	}
	return &httpguard.Refusal{Status: http.StatusUnauthorized, Msg: "want the header Authorization: Bearer TOKEN, with TOKEN from the file " + TokenFile + " in the agent's state dir"}
}

// checkPost applies the POST guard: JSON content type, not cross-origin,
// the bearer token (or the page's key, from this machine), and a small,
// well-formed body. The Host check has already passed (access).
func (s *Server) checkPost(r *http.Request) error {
	if err := httpguard.CheckJSONPost(r, s.cop); err != nil {
		return err
	}
	if err := s.checkToken(r, true); err != nil {
		return err
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxPostBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return &httpguard.Refusal{Status: http.StatusRequestEntityTooLarge, Msg: fmt.Sprintf("body over %d bytes", maxPostBody)}
		}
		return fmt.Errorf("reading body: %w", err)
	}
	if len(bytes.TrimSpace(body)) > 0 && !json.Valid(body) {
		return &httpguard.Refusal{Status: http.StatusBadRequest, Msg: "body is not JSON"}
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "localapi: encoding: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
