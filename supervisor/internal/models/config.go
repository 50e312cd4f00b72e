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
	// the timeouts below apply instead. Its Transport must be nil or an
	// *http.Transport: the store uses a clone whose dialer checks every
	// address against Allow (its DialContext and DialTLSContext are
	// replaced).
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

	// LocalInputDir is where the agent's local API puts the files uploaded
	// with a local job (audio to transcribe), under random names and for
	// the job's time only; file:// inputs inside it are allowed as inside
	// AllowFileDir. (default "": none)
	LocalInputDir string

	// Allow lists the networks ("10.1.0.0/16"), addresses ("127.0.0.1",
	// "::1") and host names ("mirror.lan") the store may connect to besides
	// public addresses (default none: loopback, private, link-local and
	// other non-public addresses are refused, checked on every address
	// dialled, redirects included). Tests and local mirrors allow theirs
	// here; see package dialguard.
	Allow []string

	// MaxFileBytes caps one model file, in bytes, whatever the studio
	// declares or the server sends (default 256 GiB). A larger
	// Content-Length is refused before the body is read; a body without one
	// is cut off at the cap.
	MaxFileBytes int64

	// MinFreeBytes is the disk space a model download leaves free on the
	// file system of Root (default 1 GiB): checked before the request,
	// again once the size is known, and every 64 MiB while writing.
	MinFreeBytes int64

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
	Done  int64 // bytes on disk so far, resumed bytes included
	// Fetched is the bytes this transfer received (Done less what a
	// resumed .part held), and Elapsed how long the transfer has run.
	Fetched int64
	Elapsed time.Duration
	Total   int64         // -1 when unknown
	Rate    float64       // bytes per second over this transfer
	ETA     time.Duration // -1 when unknown
	Final   bool          // the download is complete
}

const (
	defaultInputLimit       = 256 << 20
	defaultUserAgent        = "studio-worker/stoker"
	defaultMaxRedirects     = 5
	defaultModelTimeout     = 30 * time.Minute
	defaultInputTimeout     = 120 * time.Second
	defaultIdleTimeout      = 60 * time.Second
	defaultProgressInterval = 5 * time.Second
	// defaultMaxFileBytes: no single model file comes near it (Hugging Face
	// stores at most 50 GB per file; bigger models come in shards), yet a
	// server that streams forever stops here if the disk reserve did not
	// stop it first.
	defaultMaxFileBytes = 256 << 30
	// defaultMinFreeBytes: what the rest of the node needs on the same disk
	// (job inputs and spooled results in the state dir, logs) after a
	// download; well above the 64 MiB written between two checks.
	defaultMinFreeBytes = 1 << 30
	// diskCheckEvery is how many bytes a download writes between two
	// checks of the free space: one statfs per 64 MiB costs nothing.
	diskCheckEvery = 64 << 20
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
	if c.MaxFileBytes == 0 {
		c.MaxFileBytes = defaultMaxFileBytes
	}
	if c.MinFreeBytes == 0 {
		c.MinFreeBytes = defaultMinFreeBytes
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
	case c.MaxFileBytes < 0 || c.MinFreeBytes < 0:
		return errors.New("max file bytes or min free bytes is negative")
	case c.MaxRedirects < 0:
		return errors.New("max redirects is negative")
	case c.ModelTimeout < 0 || c.InputTimeout < 0 || c.IdleTimeout < 0 || c.ProgressInterval < 0:
		return errors.New("negative duration")
	case c.AllowFileDir != "" && !filepath.IsAbs(c.AllowFileDir):
		return errors.New("allow file dir must be absolute")
	case c.LocalInputDir != "" && !filepath.IsAbs(c.LocalInputDir):
		return errors.New("local input dir must be absolute")
	}
	return nil
}
