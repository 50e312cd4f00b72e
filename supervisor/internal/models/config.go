package models

import (
	"errors"
	"net/http"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Config configures a Store. The zero value of every field but Root means
// the documented default.
type Config struct {
	// Root is models_root, the cache directory. Required; created if
	// missing.
	Root string

	// MaxBytes caps the bytes of model files kept under Root (default 0: no
	// cap). Over the cap, the least recently used files not in use are
	// evicted after each download. Legacy flat files are not counted.
	MaxBytes int64

	// InputLimit bounds one task input, in bytes (default 256 MiB).
	InputLimit int64

	// HTTPClient makes the requests (default: a new client with
	// http.DefaultTransport's settings). The store uses a copy whose
	// CheckRedirect enforces the URL policy and whose Timeout is unset;
	// the timeouts below apply instead.
	HTTPClient *http.Client

	// UserAgent is sent with every request (default "studio-worker/stoker";
	// spec §1.3 asks for studio-worker/<version>).
	UserAgent string

	// Logger receives progress and warnings (default: discard).
	Logger hclog.Logger

	// RefuseLoopbackHTTP refuses plain http even to loopback hosts (default
	// false: spec §6.3 tolerates loopback http for tests and local mirrors).
	RefuseLoopbackHTTP bool

	// AllowFileDir lets task inputs use file:// URLs naming files inside
	// this directory, after symlinks are resolved (default "": file:// is
	// refused). Model files never come from file:// URLs.
	AllowFileDir string

	// MaxRedirects bounds the redirects followed per request (default 5).
	MaxRedirects int

	// ModelTimeout bounds one model file download (default 30 min, spec §11).
	ModelTimeout time.Duration

	// InputTimeout bounds one task input download (default 120 s, spec §11).
	InputTimeout time.Duration

	// IdleTimeout fails a download that receives no byte for this long,
	// response headers included (default 60 s).
	IdleTimeout time.Duration

	// ProgressInterval is the cadence of progress log lines and callbacks
	// for one download (default 5 s).
	ProgressInterval time.Duration

	// OnProgress, if set, is called on the downloading goroutine at the
	// ProgressInterval cadence and once when a download completes. It must
	// not block.
	OnProgress func(Progress)
}

// Progress describes one download in flight.
type Progress struct {
	Model string // sanitised model id; "" for a task input
	File  string
	Done  int64         // bytes on disk so far, resumed bytes included
	Total int64         // -1 when unknown
	Rate  float64       // bytes per second over this transfer
	ETA   time.Duration // -1 when unknown
	Final bool          // the download is complete
}

const (
	defaultInputLimit       = 256 << 20
	defaultUserAgent        = "studio-worker/stoker"
	defaultMaxRedirects     = 5
	defaultModelTimeout     = 30 * time.Minute
	defaultInputTimeout     = 120 * time.Second
	defaultIdleTimeout      = 60 * time.Second
	defaultProgressInterval = 5 * time.Second
)

// withDefaults returns a copy of c with defaults applied.
func (c Config) withDefaults() Config {
	if c.InputLimit == 0 {
		c.InputLimit = defaultInputLimit
	}
	if c.UserAgent == "" {
		c.UserAgent = defaultUserAgent
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	if c.MaxRedirects == 0 {
		c.MaxRedirects = defaultMaxRedirects
	}
	if c.ModelTimeout == 0 {
		c.ModelTimeout = defaultModelTimeout
	}
	if c.InputTimeout == 0 {
		c.InputTimeout = defaultInputTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = defaultIdleTimeout
	}
	if c.ProgressInterval == 0 {
		c.ProgressInterval = defaultProgressInterval
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.Root == "":
		return errors.New("root is required")
	case c.MaxBytes < 0:
		return errors.New("max bytes is negative")
	case c.InputLimit < 0:
		return errors.New("input limit is negative")
	case c.MaxRedirects < 0:
		return errors.New("max redirects is negative")
	case c.ModelTimeout < 0 || c.InputTimeout < 0 || c.IdleTimeout < 0 || c.ProgressInterval < 0:
		return errors.New("negative duration")
	case c.AllowFileDir != "" && !filepath.IsAbs(c.AllowFileDir):
		return errors.New("allow file dir must be absolute")
	}
	return nil
}
