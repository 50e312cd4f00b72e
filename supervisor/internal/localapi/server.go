package localapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
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
	// Logger receives the server's lines. (a null logger)
	Logger hclog.Logger
	// AllowedHosts are host names (without port) a POST's Host header may
	// carry besides IP literals and "localhost", for an operator who
	// reaches the node by name. (none)
	AllowedHosts []string
	// ShutdownTimeout bounds Close's wait for requests in flight before
	// their connections are cut. (5s)
	ShutdownTimeout time.Duration
	// Now is the clock, for uptime. (time.Now)
	Now func() time.Time
}

// maxPostBody bounds what a pause or resume request may carry.
const maxPostBody = 4 << 10

// Server is the local API. Create it with New, then Start it once; Close
// stops it.
type Server struct {
	cfg     Config
	log     hclog.Logger
	httpSrv *http.Server
	cop     *http.CrossOriginProtection
	page    *page

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
	s := &Server{cfg: cfg, log: cfg.Logger.Named("localapi"), cop: http.NewCrossOriginProtection(), page: pg}
	s.httpSrv = &http.Server{
		Handler:           s.routes(),
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
	mux.HandleFunc("GET /metrics", s.handleMetrics)
	mux.HandleFunc("POST /v1/pause", s.guard(func() { s.cfg.Controls.SetPaused(true) }))
	mux.HandleFunc("POST /v1/resume", s.guard(func() { s.cfg.Controls.SetPaused(false) }))
	return mux
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

func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	snap := s.cfg.Source.Snapshot()
	var b bytes.Buffer
	writeMetrics(&b, &snap, s.cfg.Now())
	w.Header().Set("Content-Type", metricsContentType)
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b.Bytes())
}

func (s *Server) handlePage(w http.ResponseWriter, r *http.Request) {
	snap := s.cfg.Source.Snapshot()
	var b bytes.Buffer
	if err := s.page.render(&b, &snap, s.cfg.Now()); err != nil {
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

// guard wraps a state-changing action with the checks the package doc
// describes, runs it, and answers the pause flag as JSON.
func (s *Server) guard(action func()) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := s.checkPost(r); err != nil {
			s.log.Warn("refused a local API request", "path", r.URL.Path, "remote", r.RemoteAddr, "error", err)
			writeJSON(w, statusOf(err), errorBody{Error: err.Error()})
			return
		}
		action()
		writeJSON(w, http.StatusOK, pauseBody{Paused: s.cfg.Controls.Paused()})
	}
}

// refusal is a request the guard turns away, with its HTTP status.
type refusal struct {
	status int
	msg    string
}

func (e *refusal) Error() string { return e.msg }

func statusOf(err error) int {
	if r, ok := errors.AsType[*refusal](err); ok {
		return r.status
	}
	return http.StatusBadRequest
}

// checkPost applies the POST guard: JSON content type, not cross-origin,
// a Host that cannot be a rebound name, and a small, well-formed body.
func (s *Server) checkPost(r *http.Request) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return &refusal{http.StatusUnsupportedMediaType, "localapi: want Content-Type: application/json"}
	}
	if err := s.cop.Check(r); err != nil {
		return &refusal{http.StatusForbidden, fmt.Sprintf("localapi: cross-origin request refused: %v", err)}
	}
	if !s.hostAllowed(r.Host) {
		return &refusal{http.StatusForbidden, fmt.Sprintf("localapi: host %q not allowed; add it to the allowed hosts or use an IP address", r.Host)}
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxPostBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return &refusal{http.StatusRequestEntityTooLarge, fmt.Sprintf("localapi: body over %d bytes", maxPostBody)}
		}
		return fmt.Errorf("localapi: reading body: %w", err)
	}
	if len(bytes.TrimSpace(body)) > 0 && !json.Valid(body) {
		return &refusal{http.StatusBadRequest, "localapi: body is not JSON"}
	}
	return nil
}

// hostAllowed reports whether a Host header names this node in a way no
// DNS rebinding can forge: an IP literal, localhost, or an allowed name.
func (s *Server) hostAllowed(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "" {
		return false
	}
	if net.ParseIP(host) != nil || strings.EqualFold(host, "localhost") {
		return true
	}
	for _, a := range s.cfg.AllowedHosts {
		if strings.EqualFold(host, a) {
			return true
		}
	}
	return false
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
