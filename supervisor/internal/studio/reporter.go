package studio

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/stokerhq/stoker/supervisor/internal/protocol"
	"github.com/stokerhq/stoker/supervisor/internal/secret"
)

// reporter is the Reporter of one job, bound to the session that accepted
// it and to the credentials of that session.
type reporter struct {
	c        *Client
	s        *session
	jobID    string
	workerID string
	token    secret.Value
	log      hclog.Logger

	// release frees the job slot; called once the outcome is reported,
	// so the studio's next offer (sent as soon as it has the outcome)
	// finds the worker idle.
	release func()
	// acceptSeq is the heartbeat sent right after accept (0: none).
	acceptSeq uint64

	mu       sync.Mutex // serialises terminal reports; guards reported
	reported bool
}

// finishing marks the terminal report as under way (see Client.finishing).
func (r *reporter) finishing() { r.c.finishing.Store(true) }

// done records the outcome as reported and frees the slot.
func (r *reporter) doneLocked() {
	r.reported = true
	if r.release != nil {
		r.release()
	}
}

var _ Reporter = (*reporter)(nil)

func (c *Client) newReporter(s *session, jobID string, log hclog.Logger) *reporter {
	return &reporter{c: c, s: s, jobID: jobID, workerID: s.workerID, token: s.token, log: log}
}

func (r *reporter) isReported() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reported
}

// CompleteJSON implements Reporter.
func (r *reporter) CompleteJSON(ctx context.Context, result json.RawMessage, prompt string) error {
	if !isJSONContainer(result) {
		return errors.New("complete json: result is not a JSON object or array")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reported {
		return ErrAlreadyReported
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("complete json: %w", err)
	}
	r.finishing()
	if err := r.s.send(protocol.CompleteJSON{JobID: r.jobID, Result: result, Prompt: prompt}); err != nil {
		// I-11: never "completed"; no fail frame can follow on this socket.
		r.log.Error("json result send failed; the job is lost to this session", "error", err)
		return err
	}
	r.doneLocked()
	r.log.Info("json result sent")
	return nil
}

// Fail implements Reporter.
func (r *reporter) Fail(ctx context.Context, message string, retryable bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reported {
		return ErrAlreadyReported
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("fail: %w", err)
	}
	r.finishing()
	if err := r.s.send(protocol.Fail{JobID: r.jobID, Error: message, Retryable: retryable}); err != nil {
		r.log.Error("failed to notify studio of job failure", "error", err)
		return err
	}
	r.doneLocked()
	r.log.Info("job failure reported", "retryable", retryable)
	return nil
}

var extPattern = regexp.MustCompile(`^[A-Za-z0-9]{1,16}$`)

// Upload implements Reporter.
func (r *reporter) Upload(ctx context.Context, ext, prompt string, open func() (io.ReadCloser, error)) error {
	ext = strings.TrimPrefix(ext, ".")
	if !extPattern.MatchString(ext) {
		return fmt.Errorf("upload result: bad extension %q", ext)
	}
	u, err := protocol.HTTPURL(r.c.cfg.BaseURL, protocol.RouteComplete(r.workerID, r.jobID))
	if err != nil {
		return fmt.Errorf("upload result: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reported {
		return ErrAlreadyReported
	}
	if r.acceptSeq > 0 && !r.s.waitAcked(ctx, r.acceptSeq, acceptBarrier) {
		r.log.Warn("studio has not acknowledged the heartbeat sent after accept; uploading anyway")
	}
	var last *UploadError
	for attempt := 1; ; attempt++ {
		status, body, err := r.uploadOnce(ctx, u, ext, prompt, open)
		if err == nil && status/100 == 2 {
			r.doneLocked()
			r.log.Info("binary upload ok", "attempts", attempt)
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("upload result: %w", ctx.Err())
		}
		last = &UploadError{Status: status, Body: body, Attempts: attempt, Err: err}
		var oe openError
		retry := !errors.As(err, &oe) && (status == 0 || status >= 500)
		if !retry || attempt > protocol.UploadRetries {
			r.log.Error("binary upload failed", "error", last)
			return last
		}
		pause := r.c.cfg.UploadRetryPause * time.Duration(attempt)
		r.log.Warn("binary upload failed; retrying", "error", last, "retry_in", pause)
		if !sleep(ctx, pause) {
			return fmt.Errorf("upload result: %w", ctx.Err())
		}
	}
}

// acceptBarrier bounds how long an upload waits for proof that the studio
// read the job's accept. The upload goes over HTTP, the accept over the
// WebSocket; a studio that handled a fast job's upload before reading its
// accept would see an accept for a job already done, call it a protocol
// violation and drop the session.
const acceptBarrier = 5 * time.Second

// openError marks a failure to open the result (local, not retried).
type openError struct{ err error }

func (e openError) Error() string { return "open result: " + e.err.Error() }
func (e openError) Unwrap() error { return e.err }

var quoteEscaper = strings.NewReplacer("\\", "\\\\", `"`, "\\\"", "\r", "", "\n", "")

// uploadOnce makes one streamed multipart POST (§7.1): parts prompt, ext,
// image, in that order. The body is produced on a goroutine through a pipe
// and is never held in memory; the goroutine has ended when uploadOnce
// returns.
func (r *reporter) uploadOnce(ctx context.Context, u, ext, prompt string, open func() (io.ReadCloser, error)) (int, string, error) {
	src, err := open()
	if err != nil {
		return 0, "", openError{err}
	}
	// Once the last byte is read the studio may store the result and offer
	// the next job before its response reaches us.
	src = &eofNotifier{ReadCloser: src, atEOF: r.finishing}
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	writeDone := make(chan error, 1)
	go func() {
		defer src.Close()
		err := writeMultipart(mw, ext, prompt, protocol.ResultFileName(r.jobID, ext), src)
		pw.CloseWithError(err)
		writeDone <- err
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, pr)
	if err != nil {
		pr.CloseWithError(err)
		<-writeDone
		return 0, "", err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+r.token.Reveal())
	resp, err := r.c.cfg.HTTPClient.Do(req)
	// Whatever happened, stop the writer (a no-op if it finished) and wait.
	pr.CloseWithError(errUploadDone)
	werr := <-writeDone
	if err != nil {
		var oe openError
		if errors.As(werr, &oe) {
			return 0, "", werr
		}
		return 0, "", fmt.Errorf("post result: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxBodyInLog))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // let the connection be reused
	return resp.StatusCode, strings.TrimSpace(string(b)), nil
}

var errUploadDone = errors.New("upload finished")

func writeMultipart(mw *multipart.Writer, ext, prompt, filename string, src io.Reader) error {
	if err := mw.WriteField(protocol.PartPrompt, prompt); err != nil {
		return err
	}
	if err := mw.WriteField(protocol.PartExt, ext); err != nil {
		return err
	}
	h := make(textproto.MIMEHeader)
	h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="%s"; filename="%s"`, protocol.PartFile, quoteEscaper.Replace(filename)))
	h.Set("Content-Type", protocol.ContentTypeForExt(ext))
	part, err := mw.CreatePart(h)
	if err != nil {
		return err
	}
	if _, err := io.Copy(part, src); err != nil {
		return openError{fmt.Errorf("read result: %w", err)}
	}
	return mw.Close()
}

func isJSONContainer(b json.RawMessage) bool {
	t := bytes.TrimSpace(b)
	if len(t) == 0 || (t[0] != '{' && t[0] != '[') {
		return false
	}
	return json.Valid(t)
}

// eofNotifier calls atEOF when its reader reports io.EOF.
type eofNotifier struct {
	io.ReadCloser
	atEOF func()
}

func (e *eofNotifier) Read(p []byte) (int, error) {
	n, err := e.ReadCloser.Read(p)
	if err == io.EOF {
		e.atEOF()
	}
	return n, err
}
