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
	"os"
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
	// base is the session's logger; log adds the job's id to it, on the
	// rare lines a reporter writes, so that no job pays for a logger of
	// its own.
	base hclog.Logger

	// release frees the job slot; called once the outcome is reported,
	// so the studio's next offer (sent as soon as it has the outcome)
	// finds the worker idle.
	release func()
	// acceptSeq is the heartbeat sent right after accept (0: none yet;
	// Upload sends one).
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

func (c *Client) newReporter(s *session, jobID string, base hclog.Logger) *reporter {
	return &reporter{c: c, s: s, jobID: jobID, workerID: s.workerID, token: s.token, base: base}
}

// log is the logger of the job's lines.
func (r *reporter) log() hclog.Logger { return r.base.With("job", r.jobID) }

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
	data, err := r.encodeJSONResult(result, prompt)
	if err != nil {
		return err // nothing sent: the runner fails the job
	}
	r.finishing()
	if _, err := r.s.writeData(protocol.TypeCompleteJSON, data, 0); err != nil {
		// I-11: never "completed"; no fail frame can follow on this
		// socket. The runner logs the job's end.
		return err
	}
	r.doneLocked()
	return nil
}

// encodeJSONResult encodes the completeJson frame. A frame over the send
// limit only because of the prompt goes without it (the prompt is optional
// on the wire, §4.1.5, and the studio has it: it sent the task; omitting is
// not truncating, I-3). A result too large on its own is a
// *FrameTooLargeError: the studio would refuse it from any node.
func (r *reporter) encodeJSONResult(result json.RawMessage, prompt string) ([]byte, error) {
	data, err := protocol.Encode(protocol.CompleteJSON{JobID: r.jobID, Result: result, Prompt: prompt})
	if err != nil {
		return nil, fmt.Errorf("complete json: %w", err)
	}
	limit := r.c.cfg.MaxSendFrameBytes
	if int64(len(data)) <= limit || prompt == "" {
		if int64(len(data)) > limit {
			return nil, &FrameTooLargeError{Type: protocol.TypeCompleteJSON, Size: int64(len(data)), Limit: limit}
		}
		return data, nil
	}
	bare, err := protocol.Encode(protocol.CompleteJSON{JobID: r.jobID, Result: result})
	if err != nil {
		return nil, fmt.Errorf("complete json: %w", err)
	}
	if int64(len(bare)) > limit {
		return nil, &FrameTooLargeError{Type: protocol.TypeCompleteJSON, Size: int64(len(bare)), Limit: limit}
	}
	r.log().Warn("json result sent without its prompt: with it the frame would be over the limit",
		"frame_bytes", len(data), "limit", limit)
	return bare, nil
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
		return err // the runner logs the job's end
	}
	r.doneLocked()
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
	if r.acceptSeq == 0 {
		// No heartbeat went out after accept (a kind with a JSON result
		// that uploads after all): one now is the same proof.
		r.acceptSeq = r.s.beatSoon()
	}
	if !r.s.waitAcked(ctx, r.acceptSeq, acceptBarrier) {
		r.log().Warn("studio has not acknowledged the heartbeat sent after accept; uploading anyway")
	}
	var last *UploadError
	// sized is set once the studio answered 411 Length Required: from
	// then on every attempt says its Content-Length.
	sized := false
	retries := 0
	for attempt := 1; ; attempt++ {
		status, body, err := r.uploadOnce(ctx, u, ext, prompt, open, sized)
		if err == nil && status/100 == 2 {
			r.doneLocked()
			r.log().Debug("binary upload ok", "attempts", attempt)
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("upload result: %w", ctx.Err())
		}
		last = &UploadError{Status: status, Body: body, Attempts: attempt, Err: err}
		if status == http.StatusLengthRequired && !sized {
			// A studio (or a proxy in front of it) that will not take a
			// streamed body: send the same bytes again with their length,
			// at once. This is not one of the retries.
			r.log().Warn("studio wants the upload's length (411); uploading again with Content-Length")
			sized = true
			continue
		}
		var oe openError
		retry := !errors.As(err, &oe) && (status == 0 || status >= 500)
		if !retry || retries >= protocol.UploadRetries {
			return last // the runner logs the job's end
		}
		retries++
		pause := r.c.cfg.UploadRetryPause * time.Duration(retries)
		r.log().Warn("binary upload failed; retrying", "error", last, "retry_in", pause)
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

// uploadOnce makes one multipart POST (§7.1): parts prompt, ext, image, in
// that order, streamed and never held in memory. The body has a
// Content-Length when the result's size is known (a file, as the runner's
// retries read from its spool) or must be (sized: the studio answered 411;
// a result of unknown size is then spooled to a temporary file first);
// otherwise it is chunked. The upload fails when it makes no progress —
// no byte of the body taken, or no answer once it is sent — for
// UploadStallTimeout, however long it takes in all. Any goroutine it starts
// has ended when it returns.
func (r *reporter) uploadOnce(ctx context.Context, u, ext, prompt string, open func() (io.ReadCloser, error), sized bool) (int, string, error) {
	src, err := open()
	if err != nil {
		return 0, "", openError{err}
	}
	size := sizeOf(src)
	if sized && size < 0 {
		if src, size, err = spoolTemp(src); err != nil {
			return 0, "", openError{err}
		}
	}
	// Once the last byte is read the studio may store the result and offer
	// the next job before its response reaches us.
	src = &eofNotifier{ReadCloser: src, atEOF: r.finishing}

	stall := r.c.cfg.UploadStallTimeout
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	watchdog := time.AfterFunc(stall, func() { cancel(errUploadStalled) })
	defer watchdog.Stop()
	progress := func() { watchdog.Reset(stall) }

	var body io.Reader
	var contentType string
	var length int64 = -1
	writeDone := make(chan error, 1)
	filename := protocol.ResultFileName(r.jobID, ext)
	if size >= 0 {
		head, tail, ct, err := multipartFrame(ext, prompt, filename)
		if err != nil {
			src.Close()
			return 0, "", err
		}
		length = int64(len(head)) + size + int64(len(tail))
		body = io.MultiReader(bytes.NewReader(head), &readErrs{r: io.LimitReader(src, size)}, bytes.NewReader(tail))
		contentType = ct
		defer src.Close()
		writeDone <- nil
	} else {
		pr, pw := io.Pipe()
		mw := multipart.NewWriter(pw)
		contentType = mw.FormDataContentType()
		go func() {
			defer src.Close()
			err := writeMultipart(mw, ext, prompt, filename, src)
			pw.CloseWithError(err)
			writeDone <- err
		}()
		body = pr
	}
	// Whatever happens, stop the writer (a no-op once it finished) and
	// wait for it: the server may answer before it took the whole body.
	stopWriter := func() error {
		if pr, ok := body.(*io.PipeReader); ok {
			pr.CloseWithError(errUploadDone)
		}
		return <-writeDone
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, &progressReader{r: body, progress: progress})
	if err != nil {
		stopWriter()
		return 0, "", err
	}
	req.ContentLength = length
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Authorization", "Bearer "+r.token.Reveal())
	resp, err := r.c.uploadClient.Do(req)
	werr := stopWriter()
	if err != nil {
		var oe openError
		if errors.As(werr, &oe) || errors.As(err, &oe) {
			return 0, "", oe
		}
		if context.Cause(ctx) == errUploadStalled {
			return 0, "", fmt.Errorf("post result: no progress for %v: %w", stall, err)
		}
		return 0, "", fmt.Errorf("post result: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxBodyInLog))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // let the connection be reused
	return resp.StatusCode, strings.TrimSpace(string(b)), nil
}

// errUploadStalled is the cause of an upload cancelled for lack of
// progress.
var errUploadStalled = errors.New("upload made no progress")

// progressReader reports every read that returns bytes.
type progressReader struct {
	r        io.Reader
	progress func()
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.progress()
	}
	return n, err
}

// readErrs marks the result's own read errors as openError (local, not
// retried), apart from the transport's.
type readErrs struct{ r io.Reader }

func (e *readErrs) Read(b []byte) (int, error) {
	n, err := e.r.Read(b)
	if err != nil && err != io.EOF {
		err = openError{fmt.Errorf("read result: %w", err)}
	}
	return n, err
}

// sizeOf returns the size of what r will read, when r knows it (a file, an
// in-memory reader), else -1.
func sizeOf(r io.Reader) int64 {
	switch v := r.(type) {
	case interface{ Stat() (os.FileInfo, error) }:
		if fi, err := v.Stat(); err == nil && fi.Mode().IsRegular() {
			if s, ok := r.(io.Seeker); ok {
				if off, err := s.Seek(0, io.SeekCurrent); err == nil {
					return fi.Size() - off
				}
			}
		}
	case interface{ Len() int }: // bytes.Reader, strings.Reader: unread bytes
		return int64(v.Len())
	}
	return -1
}

// spoolTemp copies a result of unknown size to a temporary file, so that
// its length can be sent; the returned reader removes the file on Close.
func spoolTemp(src io.ReadCloser) (io.ReadCloser, int64, error) {
	defer src.Close()
	f, err := os.CreateTemp("", "stoker-upload-*")
	if err != nil {
		return nil, 0, err
	}
	os.Remove(f.Name()) // the open file lives on until closed
	n, err := io.Copy(f, src)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("spool result: %w", err)
	}
	return f, n, nil
}

// multipartFrame returns the bytes before and after the file part's
// content for an upload with a known length, and the body's content type.
func multipartFrame(ext, prompt, filename string) (head, tail []byte, contentType string, err error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	if _, err := writeParts(mw, ext, prompt, filename); err != nil {
		return nil, nil, "", err
	}
	head = bytes.Clone(buf.Bytes())
	buf.Reset()
	if err := mw.Close(); err != nil {
		return nil, nil, "", err
	}
	return head, buf.Bytes(), mw.FormDataContentType(), nil
}

var errUploadDone = errors.New("upload finished")

func writeMultipart(mw *multipart.Writer, ext, prompt, filename string, src io.Reader) error {
	part, err := writeParts(mw, ext, prompt, filename)
	if err != nil {
		return err
	}
	if _, err := io.Copy(part, &readErrs{r: src}); err != nil {
		var oe openError
		if errors.As(err, &oe) {
			return oe
		}
		return err
	}
	return mw.Close()
}

// writeParts writes the prompt and ext parts and the file part's header,
// and returns the file part for its content.
func writeParts(mw *multipart.Writer, ext, prompt, filename string) (io.Writer, error) {
	if err := mw.WriteField(protocol.PartPrompt, prompt); err != nil {
		return nil, err
	}
	if err := mw.WriteField(protocol.PartExt, ext); err != nil {
		return nil, err
	}
	h := make(textproto.MIMEHeader)
	h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="%s"; filename="%s"`, protocol.PartFile, quoteEscaper.Replace(filename)))
	h.Set("Content-Type", protocol.ContentTypeForExt(ext))
	return mw.CreatePart(h)
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
