package localjobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/stokerhq/stoker/plugins"
)

// reporter takes a local job's outcome from the runner and holds it for
// the waiting request. The runner reports exactly one outcome; a second is
// refused.
type reporter struct {
	dir string // where a binary result is spooled
	max int64  // bound on a binary result

	mu       sync.Mutex // guards all below
	reported bool
	res      *Result
	err      error
}

// errReported is the answer to a second outcome.
var errReported = errors.New("localjobs: outcome already reported")

func (r *reporter) set(res *Result, err error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reported {
		res.Close()
		return errReported
	}
	r.reported, r.res, r.err = true, res, err
	return nil
}

// outcome is what was reported; a runner that reported nothing is an
// engine failure.
func (r *reporter) outcome() (*Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.reported {
		return nil, &Error{Code: CodeEngine, Kind: plugins.ErrEngine, Message: "the job runner reported no outcome"}
	}
	return r.res, r.err
}

func (r *reporter) CompleteJSON(_ context.Context, result json.RawMessage, _ string) error {
	return r.set(&Result{JSON: append(json.RawMessage(nil), result...)}, nil)
}

// Upload copies the result into an unlinked spool file; a failed copy
// (the engine failed mid-stream, or the result is over the bound) is the
// upload's error, and the runner then reports the failure.
func (r *reporter) Upload(ctx context.Context, ext, _ string, open func() (io.ReadCloser, error)) error {
	src, err := open()
	if err != nil {
		return err
	}
	defer src.Close()
	f, err := os.CreateTemp(r.dir, "result-*."+ext)
	if err != nil {
		return fmt.Errorf("spool result: %w", err)
	}
	os.Remove(f.Name()) // the open file is all that is needed
	n, err := io.Copy(f, io.LimitReader(src, r.max+1))
	if err == nil && n > r.max {
		err = fmt.Errorf("the result is over %d bytes, the local API's limit", r.max)
	}
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return err
	}
	if err := r.set(&Result{Ext: ext, File: f, Size: n}, nil); err != nil {
		return err
	}
	return nil
}

func (r *reporter) Fail(_ context.Context, message string, _ bool) error {
	return r.set(nil, &Error{Code: CodeEngine, Kind: plugins.ErrEngine, Message: message})
}

// FailJob is the typed failure (jobs.FailureReporter).
func (r *reporter) FailJob(_ context.Context, je *plugins.JobError, message string) error {
	return r.set(nil, fromJobError(je, message))
}

// textReporter also takes an llm answer's text as it is generated
// (jobs.TextReporter).
type textReporter struct {
	*reporter
	text func(piece string) error
}

// Text passes a piece on; a failure to (the client left, or stopped
// reading) cancels the job.
func (r *textReporter) Text(piece string) error {
	if err := r.text(piece); err != nil {
		return &plugins.JobError{Kind: plugins.ErrCancelled, Message: "the client stopped taking the streamed answer: " + err.Error(), Err: err}
	}
	return nil
}
