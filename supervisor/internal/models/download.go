package models

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/stokerhq/stoker/supervisor/internal/dialguard"
)

const (
	// copyBufSize is one buffer of a download: large enough that the
	// per-chunk costs (syscalls, channel hand-offs, progress checks) vanish
	// next to the bytes.
	copyBufSize = 1 << 20
	// copyBuffers is how many buffers a download cycles between its reader
	// and its writer.
	copyBuffers = 4
	// writebackChunk is how often a download asks the kernel to start
	// writing to disk.
	writebackChunk = 8 << 20
)

// download streams f into dst+".part", resuming what is there, verifies it
// and renames it to dst. The caller holds dst's exclusive lock. ctx is the
// caller's context; dctx adds the download timeout. Any failure removes the
// .part, except a cancel of ctx itself (shutdown, job cancelled): then the
// bytes are kept for the next attempt to resume.
func (s *Store) download(ctx, dctx context.Context, model string, f File, dst string) (err error) {
	part := dst + partSuffix
	pf, err := s.openOwn(part)
	if err != nil {
		return err
	}
	defer func() {
		pf.Close()
		if err != nil && ctx.Err() == nil {
			os.Remove(part)
		}
	}()

	fi, err := pf.Stat()
	if err != nil {
		return err
	}
	have := fi.Size()
	dir := filepath.Dir(dst)
	// spec §6.6 step 3: approxBytes × 1.1, less what the .part holds.
	need := uint64(0)
	if a := f.ApproxBytes; a > 0 {
		need = a + a/10
		if need < a { // overflow: a hint that large cannot fit anyway
			need = math.MaxUint64
		}
		need -= min(need, uint64(have))
	}
	if err := s.preflight(dir, need); err != nil {
		return err
	}

	h := sha256.New()
	if have > 0 {
		// The hash must cover the bytes already there.
		if _, err := io.CopyBuffer(h, io.LimitReader(pf, have), make([]byte, copyBufSize)); err != nil {
			return fmt.Errorf("read %s: %w", part, err)
		}
	}

	t := &transfer{s: s, model: model, file: f.Filename, url: f.URL, dir: dir}
	resp, total, err := t.open(dctx, pf, h, &have)
	if err != nil {
		return err
	}
	defer resp.body.Close()
	if total > s.cfg.MaxFileBytes {
		return fmt.Errorf("%w: %d bytes, over the limit of %d bytes for a model file", ErrTooLarge, total, s.cfg.MaxFileBytes)
	}
	if total >= 0 && f.ApproxBytes == 0 {
		if err := s.preflight(dir, uint64(max(0, total-have))); err != nil {
			return err
		}
	}

	s.log.Info("downloading model file", "model", model, "file", f.Filename, "url", redactURL(f.URL),
		"resume_from", have, "total", total)
	n, err := t.copy(pf, h, resp.body, have, total)
	if err != nil {
		return err
	}
	size := have + n
	if total >= 0 && size != total {
		return fmt.Errorf("%w: got %d of %d bytes", ErrIntegrity, size, total)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if f.SHA256 != "" && !strings.EqualFold(sum, f.SHA256) {
		return fmt.Errorf("%w: sha256 %s, want %s", ErrIntegrity, sum, strings.ToLower(f.SHA256))
	}
	if err := pf.Sync(); err != nil {
		return err
	}
	if err := os.Rename(part, dst); err != nil {
		return err
	}
	syncDir(filepath.Dir(dst))
	if st, err := os.Stat(dst); err == nil {
		if rp, ok := s.recordPath(dst); ok {
			s.writeRecord(rp, record{SHA256: sum, Size: st.Size(), MtimeNs: st.ModTime().UnixNano()})
		}
	}
	return nil
}

// preflight requires need bytes plus Config.MinFreeBytes free in dir. A
// file system that cannot tell passes.
func (s *Store) preflight(dir string, need uint64) error {
	free, known, err := s.freeBytes(dir)
	if err != nil || !known {
		return nil
	}
	want := need + uint64(s.cfg.MinFreeBytes)
	if want < need {
		want = math.MaxUint64
	}
	if free < want {
		return fmt.Errorf("%w: %d bytes free in %s, need %d (%d for the file, %d kept free)",
			ErrNoSpace, free, dir, want, need, s.cfg.MinFreeBytes)
	}
	return nil
}

// lowOnDisk returns an ErrNoSpace error once the free space in dir is below
// Config.MinFreeBytes.
func (s *Store) lowOnDisk(dir string) error {
	free, known, err := s.freeBytes(dir)
	if err != nil || !known || free >= uint64(s.cfg.MinFreeBytes) {
		return nil
	}
	return fmt.Errorf("%w: %d bytes free in %s, below the %d kept free", ErrNoSpace, free, dir, s.cfg.MinFreeBytes)
}

// syncDir makes a rename in dir durable; failure only weakens durability.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// transfer is one HTTP download, with its idle watchdog and progress meter.
type transfer struct {
	s     *Store
	model string
	file  string
	url   string
	dir   string // where the file is written, for the free-space checks
}

// open issues the GET, with a Range header when *have > 0, and follows spec
// §6.6 step 4: a 206 must start at *have, else the download restarts; a 416
// restarts; a 200 restarts in place. On a restart pf is truncated, h reset
// and *have set to 0. It returns the body and the total size (-1 unknown).
func (t *transfer) open(ctx context.Context, pf *os.File, h hash.Hash, have *int64) (*response, int64, error) {
	restart := func() error {
		*have = 0
		h.Reset()
		if err := pf.Truncate(0); err != nil {
			return err
		}
		_, err := pf.Seek(0, io.SeekStart)
		return err
	}
	for tries := 0; ; tries++ {
		resp, err := t.s.get(ctx, t.url, *have)
		if err != nil {
			return nil, 0, err
		}
		switch {
		case resp.status == http.StatusOK:
			if *have > 0 {
				t.s.log.Info("server ignored the range; downloading from the start", "file", t.file)
				if err := restart(); err != nil {
					resp.body.Close()
					return nil, 0, err
				}
			}
			return resp, resp.length, nil
		case resp.status == http.StatusPartialContent && *have > 0:
			start, total, ok := parseContentRange(resp.header.Get("Content-Range"))
			if ok && start == *have {
				if total < 0 && resp.length >= 0 {
					total = *have + resp.length
				}
				if _, err := pf.Seek(*have, io.SeekStart); err != nil {
					resp.body.Close()
					return nil, 0, err
				}
				return resp, total, nil
			}
			t.s.log.Warn("partial content at the wrong offset; downloading from the start",
				"file", t.file, "content_range", resp.header.Get("Content-Range"), "want_start", *have)
		case resp.status == http.StatusRequestedRangeNotSatisfiable && *have > 0:
			t.s.log.Warn("range not satisfiable; downloading from the start", "file", t.file, "had", *have)
		default:
			err := resp.statusError()
			resp.body.Close()
			return nil, 0, err
		}
		resp.body.Close()
		if tries > 0 {
			return nil, 0, errors.New("server keeps refusing the restarted download")
		}
		if err := restart(); err != nil {
			return nil, 0, err
		}
	}
}

// copy streams src into pf (from offset have) and h, logging progress, and
// returns the bytes copied; total is the expected final size. Reading and
// the write-and-hash run on two goroutines over a few large buffers, so the
// hash costs next to nothing on a machine with a spare core; writeback to
// disk starts as the data arrives, so the final fsync is short. The file
// may not grow past Config.MaxFileBytes, and the writer stops when the
// disk's free space falls below Config.MinFreeBytes.
func (t *transfer) copy(pf *os.File, h hash.Hash, src io.Reader, have, total int64) (int64, error) {
	m := newMeter(t.s, t.model, t.file, have, total)
	free := make(chan []byte, copyBuffers)
	full := make(chan []byte, copyBuffers)
	for range copyBuffers {
		free <- make([]byte, copyBufSize)
	}
	var (
		failed atomic.Bool
		werr   error // set by the writer before it closes done
		done   = make(chan struct{})
	)
	go func() {
		defer close(done)
		off, synced, checked := have, have, have
		for b := range full {
			if werr == nil {
				if _, err := pf.Write(b); err != nil {
					werr = err
					failed.Store(true)
				} else {
					h.Write(b)
					off += int64(len(b))
					if off-synced >= writebackChunk {
						startWriteback(pf, synced, off-synced)
						synced = off
					}
					if off-checked >= t.s.diskCheckEvery {
						checked = off
						if err := t.s.lowOnDisk(t.dir); err != nil {
							werr = err
							failed.Store(true)
						}
					}
				}
			}
			free <- b[:cap(b)]
		}
	}()

	n, rerr := int64(0), error(nil)
	for !failed.Load() {
		buf := <-free
		k, err := fill(src, buf)
		if have+n+int64(k) > t.s.cfg.MaxFileBytes {
			free <- buf
			rerr = fmt.Errorf("%w: more than %d bytes, the limit for a model file", ErrTooLarge, t.s.cfg.MaxFileBytes)
			break
		}
		if k > 0 {
			full <- buf[:k]
			n += int64(k)
			m.update(have + n)
		} else {
			free <- buf
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			rerr = err
			break
		}
	}
	close(full)
	<-done
	switch {
	case werr != nil:
		return n, werr
	case errors.Is(rerr, io.ErrUnexpectedEOF):
		return n, fmt.Errorf("%w: body ended after %d of %d bytes", ErrIntegrity, have+n, total)
	case rerr != nil:
		return n, rerr
	}
	m.finish(have + n)
	return n, nil
}

// fill reads from src until buf is full or a read fails, passing io.EOF
// through as is (unlike io.ReadFull, which would turn it into
// io.ErrUnexpectedEOF: the error a short body really gets).
func fill(src io.Reader, buf []byte) (int, error) {
	k := 0
	for k < len(buf) {
		n, err := src.Read(buf[k:])
		k += n
		if err != nil {
			return k, err
		}
	}
	return k, nil
}

// parseContentRange parses "bytes <start>-<end>/<total|*>", returning total
// -1 for "*".
func parseContentRange(v string) (start, total int64, ok bool) {
	rest, found := strings.CutPrefix(v, "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, tot, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, false
	}
	a, b, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, err1 := strconv.ParseInt(strings.TrimSpace(a), 10, 64)
	end, err2 := strconv.ParseInt(strings.TrimSpace(b), 10, 64)
	if err1 != nil || err2 != nil || start < 0 || end < start {
		return 0, 0, false
	}
	total = -1
	if tot != "*" {
		t, err := strconv.ParseInt(strings.TrimSpace(tot), 10, 64)
		if err != nil || t <= end {
			return 0, 0, false
		}
		total = t
	}
	return start, total, true
}

// response is a started GET.
type response struct {
	status int
	header http.Header
	length int64 // Content-Length, -1 unknown
	body   io.ReadCloser
}

// statusError describes a non-2xx (or unexpected) status. Nothing of the
// body goes into it: the error becomes the job's fail message at the
// studio, and the body may be anything the server had to say.
func (r *response) statusError() error {
	if text := http.StatusText(r.status); text != "" {
		return fmt.Errorf("http status %d %s", r.status, text)
	}
	return fmt.Errorf("http status %d", r.status)
}

// peerSafe returns err when its text cannot carry bytes the server sent,
// and otherwise an error that says only that the answer was not usable
// HTTP, still matching whatever err matches. Go's HTTP client quotes a
// malformed status line, header or length, and an HTTP/2 GOAWAY's debug
// data, in its errors; those become fail messages at the studio.
func peerSafe(err error) error {
	if err == nil || safeText(err) {
		return err
	}
	return &opaqueError{err: err}
}

func safeText(err error) bool {
	var (
		op   *net.OpError
		dns  *net.DNSError
		rec  tls.RecordHeaderError
		cert *tls.CertificateVerificationError
		ua   x509.UnknownAuthorityError
		he   x509.HostnameError
		ci   x509.CertificateInvalidError
	)
	for _, e := range []error{ErrRefused, ErrStalled, ErrUnsafe, context.Canceled, context.DeadlineExceeded,
		io.EOF, io.ErrUnexpectedEOF, http.ErrSchemeMismatch} {
		if errors.Is(err, e) {
			return true
		}
	}
	return errors.As(err, &op) || errors.As(err, &dns) || errors.As(err, &rec) || errors.As(err, &cert) ||
		errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci)
}

// opaqueError hides the text of an error that may quote the server.
type opaqueError struct{ err error }

func (e *opaqueError) Error() string { return "the server's answer is not valid HTTP" }
func (e *opaqueError) Unwrap() error { return e.err }

// get issues a GET for raw (from byte offset from, when > 0) under ctx. An
// idle watchdog cancels the request when neither headers nor body bytes
// arrive for Config.IdleTimeout; the returned body's reads report
// ErrStalled then.
func (s *Store) get(ctx context.Context, raw string, from int64) (*response, error) {
	rctx, cancel := context.WithCancelCause(ctx)
	idle := newIdleWatch(s.cfg.IdleTimeout, cancel)
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, raw, nil)
	if err != nil {
		idle.stop()
		return nil, refusedf("bad url: %v", err)
	}
	req.Header.Set("User-Agent", s.cfg.UserAgent)
	if from > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(from, 10)+"-")
	}
	resp, err := s.client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			// Its text repeats the URL, query string (signatures) and all.
			err = uerr.Err
		}
		err = idle.explain(rctx, err)
		idle.stop()
		if errors.Is(err, dialguard.ErrBlocked) && !errors.Is(err, ErrRefused) {
			return nil, blockedError(err) // from the dialer; the redirect check wraps its own
		}
		if safe := peerSafe(err); safe != err {
			s.log.Debug("unusable answer", "url", redactURL(raw), "error", err)
			err = safe
		}
		return nil, err
	}
	idle.kick()
	return &response{
		status: resp.StatusCode,
		header: resp.Header,
		length: resp.ContentLength,
		body:   &watchedBody{rc: resp.Body, idle: idle, ctx: rctx},
	}, nil
}

// idleWatch cancels a request when kick is not called for a while.
type idleWatch struct {
	d      time.Duration
	timer  *time.Timer
	cancel context.CancelCauseFunc
}

func newIdleWatch(d time.Duration, cancel context.CancelCauseFunc) *idleWatch {
	return &idleWatch{d: d, cancel: cancel, timer: time.AfterFunc(d, func() { cancel(ErrStalled) })}
}

func (w *idleWatch) kick() { w.timer.Reset(w.d) }

// stop disarms the watchdog and cancels the request's context, releasing
// it. A cause set by the watchdog before stays.
func (w *idleWatch) stop() {
	w.timer.Stop()
	w.cancel(nil)
}

// explain turns an error caused by the watchdog into one wrapping
// ErrStalled.
func (w *idleWatch) explain(rctx context.Context, err error) error {
	if errors.Is(context.Cause(rctx), ErrStalled) {
		return fmt.Errorf("%w: no data for %s", ErrStalled, w.d)
	}
	return err
}

// watchedBody kicks the watchdog on every read that returns bytes.
type watchedBody struct {
	rc   io.ReadCloser
	idle *idleWatch
	ctx  context.Context
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.idle.kick()
	}
	if err != nil && err != io.EOF {
		err = peerSafe(b.idle.explain(b.ctx, err))
	}
	return n, err
}

func (b *watchedBody) Close() error {
	b.idle.stop()
	return b.rc.Close()
}
