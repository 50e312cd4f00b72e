package models

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/stokerhq/stoker/supervisor/internal/dialguard"
)

// File is one model file of a ModelSource (spec §6.3).
type File struct {
	Role        string
	URL         string
	Filename    string
	ApproxBytes uint64 // 0 when not given
	SHA256      string // hex, any case; "" when not given
}

// Local is a model file on local disk.
type Local struct {
	Role string
	Path string
}

// Store is the model cache under one models_root. Its methods are safe for
// concurrent use, and several processes may share one Root.
type Store struct {
	cfg    Config
	root   string // absolute
	log    hclog.Logger
	client *http.Client
	policy urlPolicy

	// freeBytes reports the free space of the file system holding a
	// directory; a test hook.
	freeBytes func(dir string) (free uint64, known bool, err error)
	// diskCheckEvery is the bytes a download writes between two free-space
	// checks; a test hook.
	diskCheckEvery int64

	mu      sync.Mutex
	flights map[string]*flight // guarded by mu; downloads in flight, by destination path
}

// flight is one download that other callers in the process wait for.
type flight struct {
	done chan struct{} // closed when err and abandoned are set
	err  error
	// abandoned: the leader's own caller went away (its context ended), so
	// the failure says nothing about the file and a waiter should try
	// itself.
	abandoned bool
	waiters   int // guarded by Store.mu; callers waiting on done (tests watch it)
}

// Open returns a Store for cfg.Root, creating the directory if needed. It
// refuses a root that a user other than root and the agent's own can
// change (an error matching ErrUnsafe; see checkTree). It starts no
// goroutine; CloseIdleConnections releases its idle connections.
func Open(cfg Config) (*Store, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("models.Open: %w", err)
	}
	cfg = cfg.withDefaults()
	guard, err := dialguard.Parse(cfg.Allow)
	if err != nil {
		return nil, fmt.Errorf("models.Open: allow: %w", err)
	}
	root, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("models.Open: %w", err)
	}
	if err := mkdirAll(root); err != nil {
		return nil, fmt.Errorf("models.Open: %w", err)
	}
	if err := checkTree(root); err != nil {
		return nil, fmt.Errorf("models.Open: models root: %w", err)
	}
	tr, err := guardedTransport(cfg.HTTPClient, guard)
	if err != nil {
		return nil, fmt.Errorf("models.Open: %w", err)
	}
	s := &Store{
		cfg:  cfg,
		root: root,
		log:  cfg.Logger.Named("models"),
		policy: urlPolicy{allowLoopbackHTTP: !cfg.RefuseLoopbackHTTP, maxRedirects: cfg.MaxRedirects,
			guard: guard},
		freeBytes:      freeBytes,
		diskCheckEvery: diskCheckEvery,
		flights:        make(map[string]*flight),
	}
	for _, d := range []string{"locks", "verified"} {
		if _, err := s.safeDir(metaDir, d); err != nil {
			return nil, fmt.Errorf("models.Open: %w", err)
		}
	}
	var c http.Client
	if cfg.HTTPClient != nil {
		c = *cfg.HTTPClient
	}
	c.Transport = tr
	c.CheckRedirect = s.policy.checkRedirect
	c.Timeout = 0 // per-call contexts bound every request
	s.client = &c
	return s, nil
}

// guardedTransport returns a clone of the client's transport (or of
// http.DefaultTransport) that dials through guard: every address it
// connects to, after name resolution and on every redirect, is checked.
// Behind a proxy the proxy's address is what is dialled, and checked; the
// proxy resolves the names.
func guardedTransport(c *http.Client, guard *dialguard.Policy) (*http.Transport, error) {
	var base *http.Transport
	switch t := transportOf(c).(type) {
	case nil:
		base = http.DefaultTransport.(*http.Transport).Clone()
	case *http.Transport:
		base = t.Clone()
	default:
		return nil, fmt.Errorf("HTTPClient.Transport is a %T; want nil or an *http.Transport, whose dialer the store can check", t)
	}
	base.DialContext = guard.DialContext(&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second})
	base.DialTLSContext = nil // it would dial around the guard
	return base, nil
}

func transportOf(c *http.Client) http.RoundTripper {
	if c == nil {
		return nil
	}
	return c.Transport
}

// CloseIdleConnections closes the store's idle keep-alive connections.
// The store stays usable.
func (s *Store) CloseIdleConnections() { s.client.CloseIdleConnections() }

// Root returns the absolute cache directory.
func (s *Store) Root() string { return s.root }

const (
	metaDir    = ".stoker"
	partSuffix = ".part"
	// maxAttempts bounds how often one Acquire goes round when a file
	// vanishes between its download and its lease (another process evicted
	// it) or a download shared with another caller was cancelled by that
	// caller.
	maxAttempts = 4
)

// Fetch makes every file present under <Root>/<sanitised model>/ (or reuses
// a legacy flat <Root>/<filename>) and returns the local paths in the order
// of files. It blocks until all files are present or one fails, and returns
// an *Error on failure.
//
// Nothing protects the returned files from eviction once Fetch returns; a
// caller that runs a job on them should use Acquire.
func (s *Store) Fetch(ctx context.Context, model string, files []File) ([]Local, error) {
	locals, lease, err := s.Acquire(ctx, model, files)
	if err != nil {
		return nil, err
	}
	lease.Release()
	return locals, nil
}

// Acquire is Fetch, and also returns a Lease that keeps the files from
// eviction (by this or any other process sharing Root) until Release. On
// error it holds nothing.
//
// Every name and URL is checked before any request. The files are fetched
// in order, one at a time; calls for the same file share one download.
func (s *Store) Acquire(ctx context.Context, model string, files []File) ([]Local, *Lease, error) {
	dir, err := SanitizeModelID(model)
	if err != nil {
		return nil, nil, &Error{Op: "fetch", Err: err}
	}
	for _, f := range files {
		if err := CheckFilename(f.Filename); err != nil {
			return nil, nil, &Error{Op: "fetch", URL: redactURL(f.URL), File: f.Filename, Err: err}
		}
		if _, err := s.policy.parse(f.URL); err != nil {
			return nil, nil, &Error{Op: "fetch", URL: redactURL(f.URL), File: f.Filename, Err: err}
		}
		if f.SHA256 != "" && !isHexSHA256(f.SHA256) {
			return nil, nil, &Error{Op: "fetch", URL: redactURL(f.URL), File: f.Filename,
				Err: refusedf("sha256 %q is not 64 hex digits", f.SHA256)}
		}
	}
	lease := &Lease{}
	if len(files) == 0 {
		return nil, lease, nil
	}
	// The model's directories, checked before any request: a file planted
	// in one that others can write would be trusted.
	for _, d := range []string{dir, filepath.Join(metaDir, "locks", dir), filepath.Join(metaDir, "verified", dir)} {
		if _, err := s.safeDir(d); err != nil {
			return nil, nil, &Error{Op: "fetch", Err: err}
		}
	}
	locals := make([]Local, 0, len(files))
	for _, f := range files {
		p, err := s.acquireOne(ctx, dir, f, lease)
		if err != nil {
			lease.Release()
			return nil, nil, &Error{Op: "fetch", URL: redactURL(f.URL), File: f.Filename, Err: err}
		}
		locals = append(locals, Local{Role: f.Role, Path: p})
	}
	if s.cfg.MaxBytes > 0 {
		s.evict(0)
	}
	return locals, lease, nil
}

// acquireOne makes one file present and adds its shared lock to lease.
func (s *Store) acquireOne(ctx context.Context, dir string, f File, lease *Lease) (string, error) {
	dst := filepath.Join(s.root, dir, f.Filename)
	for attempt := 0; attempt < maxAttempts; attempt++ {
		p, ok, err := s.present(dir, f)
		if err != nil {
			return "", err
		}
		if ok {
			if p != dst {
				return p, nil // a legacy flat file: never evicted, needs no lease
			}
			lf, err := s.lock(ctx, s.lockPath(dir, f.Filename), lockShared)
			if err != nil {
				return "", err
			}
			if fi, err := os.Lstat(dst); err == nil && fi.Mode().IsRegular() {
				lease.add(lf)
				s.touch(dst)
				return dst, nil
			}
			lf.Close() // evicted between the check and the lock: go round
			continue
		}

		s.mu.Lock()
		if fl := s.flights[dst]; fl != nil {
			fl.waiters++
			s.mu.Unlock()
			select {
			case <-fl.done:
			case <-ctx.Done():
				return "", ctx.Err()
			}
			if fl.err != nil && !fl.abandoned {
				return "", fl.err
			}
			continue
		}
		fl := &flight{done: make(chan struct{})}
		s.flights[dst] = fl
		s.mu.Unlock()

		err = s.fill(ctx, dir, f, dst)

		s.mu.Lock()
		delete(s.flights, dst)
		s.mu.Unlock()
		fl.err, fl.abandoned = err, ctx.Err() != nil
		close(fl.done)
		if err != nil {
			return "", err
		}
	}
	return "", fmt.Errorf("file vanished %d times while being leased", maxAttempts)
}

// present returns the path of a usable copy of f: the per-model file, or a
// legacy flat file whose size equals ApproxBytes (when given). A requested
// sha256 must match either.
func (s *Store) present(dir string, f File) (string, bool, error) {
	dst := filepath.Join(s.root, dir, f.Filename)
	if ok, err := s.usable(dst, f, false); err != nil || ok {
		return dst, ok, err
	}
	flat := filepath.Join(s.root, f.Filename)
	if ok, err := s.usable(flat, f, true); err != nil || ok {
		return flat, ok, err
	}
	return "", false, nil
}

// usable reports whether the regular file at p may serve f. A symlink is
// never used (a download replaces one in the model directory). A read
// error other than absence is returned, since downloading over it would
// not help.
func (s *Store) usable(p string, f File, legacy bool) (bool, error) {
	fi, err := os.Lstat(p)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		s.log.Warn("a model file in the cache is a symlink; not using it", "path", p)
		return false, nil
	}
	if !fi.Mode().IsRegular() {
		if legacy {
			return false, nil
		}
		return false, fmt.Errorf("%s is not a regular file", p)
	}
	if legacy && f.ApproxBytes > 0 && uint64(fi.Size()) != f.ApproxBytes {
		return false, nil
	}
	if f.SHA256 == "" {
		return true, nil
	}
	match, err := s.sumMatches(p, fi, f.SHA256)
	if err != nil {
		return false, err
	}
	if !match && legacy {
		s.log.Warn("legacy model file does not match the requested sha256; not using it", "path", p)
	}
	return match, nil
}

// fill downloads f to dst under the file's exclusive lock, unless another
// process made it present meanwhile.
func (s *Store) fill(ctx context.Context, dir string, f File, dst string) error {
	dctx, cancel := context.WithTimeout(ctx, s.cfg.ModelTimeout)
	defer cancel()
	lf, err := s.lock(dctx, s.lockPath(dir, f.Filename), lockExclusive)
	if err != nil {
		return err
	}
	defer lf.Close()

	if fi, err := os.Lstat(dst); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		// Never written through: the rename of the download replaces it.
		s.log.Warn("replacing a symlink in the cache with a download", "path", dst)
	} else if err == nil {
		if f.SHA256 == "" {
			return nil
		}
		match, err := s.sumMatches(dst, fi, f.SHA256)
		if err != nil {
			return err
		}
		if match {
			return nil
		}
		s.log.Warn("cached model file does not match the requested sha256; downloading again", "path", dst)
		if err := s.removeFile(dst); err != nil {
			return err
		}
	}
	if s.cfg.MaxBytes > 0 && f.ApproxBytes > 0 {
		s.evict(int64(f.ApproxBytes))
	}
	err = s.download(ctx, dctx, dir, f, dst)
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		err = fmt.Errorf("download not done within %s: %w", s.cfg.ModelTimeout, err)
	}
	return err
}

// touch records a use of p by setting its access time, leaving the
// modification time (which the verification record keys on) alone.
func (s *Store) touch(p string) {
	if err := setAtimeNow(p); err != nil {
		s.log.Debug("cannot record use", "path", p, "error", err)
	}
}

// removeFile removes a cached file and its verification record.
func (s *Store) removeFile(p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if rp, ok := s.recordPath(p); ok {
		os.Remove(rp)
	}
	return nil
}

// Lease keeps files from eviction until Release. The zero value holds
// nothing.
type Lease struct {
	mu    sync.Mutex
	locks []*os.File // guarded by mu; shared flocks, one per leased file
}

func (l *Lease) add(f *os.File) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.locks = append(l.locks, f)
}

// Release lets the leased files be evicted again. It may be called more
// than once, and on a nil Lease.
func (l *Lease) Release() {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range l.locks {
		f.Close()
	}
	l.locks = nil
}
