package studio

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/stokerhq/stoker/supervisor/internal/devstudio"
	"github.com/stokerhq/stoker/supervisor/internal/logship"
	"github.com/stokerhq/stoker/supervisor/internal/protocol"
	"github.com/stokerhq/stoker/supervisor/internal/registration"
	"github.com/stokerhq/stoker/supervisor/internal/secret"
)

// These tests run the worker against the project's dev studio, a faithful
// server side of the spec, using its fault hooks.

func newDevStudio(t *testing.T, cfg devstudio.Config) *devstudio.Server {
	t.Helper()
	ds, err := devstudio.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := ds.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ds.Close(); err != nil {
			t.Errorf("devstudio Close: %v", err)
		}
	})
	return ds
}

func ctxLimit(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	t.Cleanup(cancel)
	return ctx
}

func devCaps() protocol.WorkerCapabilities {
	c := testCaps()
	c.TaskKinds = []protocol.TaskKind{protocol.KindImage, protocol.KindLLM}
	c.SupportedModels = []string{"synthetic", "synthetic-image", "synthetic-llm"}
	return c
}

// devRunner is a small job runner: llm → completeJson, image → upload,
// with per-job overrides.
type devRunner struct {
	mu       sync.Mutex
	override map[string]func(ctx context.Context, c *protocol.JobOfferClaim, rep Reporter)
	errs     chan error
}

func (r *devRunner) Admit(c *protocol.JobOfferClaim) error {
	if c.ModelSource.Engine != protocol.EngineSynthetic {
		return errors.New("no plugin serves engine " + c.ModelSource.Engine)
	}
	return nil
}

func (r *devRunner) RunJob(ctx context.Context, c *protocol.JobOfferClaim, rep Reporter) Outcome {
	r.mu.Lock()
	f := r.override[c.JobID]
	r.mu.Unlock()
	if f != nil {
		f(ctx, c, rep)
		return Outcome{Reported: rep.(*reporter).isReported()}
	}
	if c.Task.Kind.Binary() {
		data := bytes.Repeat([]byte("png!"), 1000)
		err := rep.Upload(ctx, "png", c.Task.Prompt(), func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
		if err != nil {
			var ue *UploadError
			retryable := !(errors.As(err, &ue) && ue.Status == 409)
			ferr := rep.Fail(ctx, err.Error(), retryable)
			r.errs <- err
			return Outcome{Err: err, Retryable: retryable, Reported: ferr == nil, ReportErr: ferr}
		}
		r.errs <- nil
		return Outcome{Reported: true, ResultBytes: int64(len(data))}
	}
	err := rep.CompleteJSON(ctx, json.RawMessage(`{"object":"chat.completion","choices":[]}`), c.Task.Prompt())
	r.errs <- err
	return Outcome{Reported: err == nil, ReportErr: err}
}

func (r *devRunner) set(job string, f func(ctx context.Context, c *protocol.JobOfferClaim, rep Reporter)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.override[job] = f
}

func runDevWorker(t *testing.T, ds *devstudio.Server, workerID, token string, r *devRunner, tweak func(*Config)) (*Client, chan error, context.CancelFunc) {
	t.Helper()
	logs := &syncBuffer{}
	cfg := Config{
		BaseURL: ds.URL(), WorkerID: workerID, AuthToken: secret.New(token),
		Capabilities: devCaps, Jobs: r,
		Logger:      hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Trace}),
		BackoffBase: time.Millisecond, BackoffMax: 5 * time.Millisecond, UploadRetryPause: time.Millisecond,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(waitLimit):
			t.Error("Run did not return")
		}
		if strings.Contains(logs.String(), token) {
			t.Error("the auth token appeared in the worker's log")
		}
	})
	return c, done, cancel
}

// TestDevStudioEndToEnd: register (auto-approved), hold the welcome with
// fast pumps (an early frame would be a protocol violation and kill the
// session), run an llm and an image job (upload 500 then OK), a 409 upload,
// then worker_deleted stops the worker.
func TestDevStudioEndToEnd(t *testing.T) {
	helloSeen := make(chan struct{}, 1)
	release := make(chan struct{})
	var uploadCalls atomic.Int32
	var conflictJob atomic.Value
	conflictJob.Store("")
	ds := newDevStudio(t, devstudio.Config{
		AutoApprove: true,
		Hooks: devstudio.Hooks{
			HoldWelcome: func(string) <-chan struct{} {
				select {
				case helloSeen <- struct{}{}:
				default:
				}
				return release
			},
			UploadStatus: func(_, jobID string, attempt int) int {
				uploadCalls.Add(1)
				if jobID == conflictJob.Load().(string) {
					return 409
				}
				if attempt == 1 {
					return 500
				}
				return 0
			},
		},
	})
	ctx := ctxLimit(t)
	state := filepath.Join(t.TempDir(), "state")
	creds, err := registration.Register(ctx, registration.Config{BaseURL: ds.URL(), StateDir: state, Capabilities: devCaps, PollInterval: time.Millisecond})
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	r := &devRunner{override: map[string]func(context.Context, *protocol.JobOfferClaim, Reporter){}, errs: make(chan error, 10)}
	q := logship.New()
	q.Push(entryText("queued before the session"))
	c, done, _ := runDevWorker(t, ds, creds.WorkerID, creds.AuthToken.Reveal(), r, func(cfg *Config) {
		cfg.HeartbeatInterval = time.Millisecond
		cfg.LogFlushInterval = time.Millisecond
		cfg.Logs = q
	})
	waitFor(t, helloSeen, "hello at the dev studio")
	close(release)
	if _, err := ds.WaitWorker(ctx, creds.WorkerID, func(v devstudio.WorkerView) bool { return v.Sessions == 1 && v.LogCount > 0 }); err != nil {
		t.Fatalf("worker never welcomed and shipping logs: %v", err)
	}

	llm, err := ds.Submit("synthetic-llm", json.RawMessage(`{"kind":"llm","messages":[{"role":"user","content":"Say hello"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	v, err := ds.WaitJob(ctx, llm, func(v devstudio.JobView) bool {
		return v.Status == devstudio.JobCompleted || v.Status == devstudio.JobFailed
	})
	if err != nil || v.Status != devstudio.JobCompleted || v.Prompt != "Say hello" || !strings.Contains(string(v.Result), "chat.completion") {
		t.Fatalf("llm job = %+v, %v", v, err)
	}
	if err := waitFor(t, r.errs, "llm runner"); err != nil {
		t.Errorf("CompleteJSON: %v", err)
	}

	prompt := strings.Repeat("a moss golem at dawn, ", 40)
	img, err := ds.Submit("synthetic-image", json.RawMessage(`{"kind":"image","prompt":"`+prompt+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	v, err = ds.WaitJob(ctx, img, func(v devstudio.JobView) bool {
		return v.Status == devstudio.JobCompleted || v.Status == devstudio.JobFailed
	})
	if err != nil || v.Status != devstudio.JobCompleted || v.ResultBytes != 4000 || v.Prompt != prompt {
		t.Fatalf("image job = %+v, %v", v, err)
	}
	if err := waitFor(t, r.errs, "image runner"); err != nil {
		t.Errorf("Upload: %v", err)
	}
	if n := uploadCalls.Load(); n != 2 {
		t.Errorf("%d upload attempts, want 2 (500 then OK)", n)
	}

	// 409: no retry, the runner reports a non-retryable fail.
	conflictJob.Store("job-3")
	img2, err := ds.Submit("synthetic-image", json.RawMessage(`{"kind":"image","prompt":"x"}`))
	if err != nil || img2 != "job-3" {
		t.Fatalf("submit = %q, %v; want job-3", img2, err)
	}
	v, err = ds.WaitJob(ctx, img2, func(v devstudio.JobView) bool { return v.Status == devstudio.JobFailed })
	if err != nil || v.Retryable {
		t.Fatalf("409 job = %+v, %v", v, err)
	}
	var ue *UploadError
	if err := waitFor(t, r.errs, "409 runner"); !errors.As(err, &ue) || ue.Status != 409 || ue.Attempts != 1 {
		t.Errorf("Upload = %v, want a single-attempt 409 UploadError", err)
	}
	if w, _ := ds.WaitWorker(ctx, creds.WorkerID, func(devstudio.WorkerView) bool { return true }); w.Sessions != 1 {
		t.Errorf("dev studio saw %d sessions, want 1 (no protocol violation)", w.Sessions)
	}

	if err := ds.DeleteWorker(creds.WorkerID); err != nil {
		t.Fatal(err)
	}
	err = waitFor(t, done, "Run to stop")
	done <- err
	var fe *FatalError
	if !errors.As(err, &fe) || fe.Code != protocol.CodeWorkerDeleted {
		t.Fatalf("Run = %v, want worker_deleted", err)
	}
	if s := c.Status(); s.State != StateFatal {
		t.Errorf("state = %v", s.State)
	}
}

// TestDevStudioSilentThenDropMidJob: a silent session is given up after the
// read-idle timeout; a drop mid-job keeps the job and its slot across the
// reconnect, and the job's studio-side claim is re-offered and completed
// after the slot frees.
func TestDevStudioSilentThenDropMidJob(t *testing.T) {
	ds := newDevStudio(t, devstudio.Config{})
	ctx := ctxLimit(t)
	id, token, err := ds.AddWorker("w-silent")
	if err != nil {
		t.Fatal(err)
	}
	r := &devRunner{override: map[string]func(context.Context, *protocol.JobOfferClaim, Reporter){}, errs: make(chan error, 10)}
	c, _, _ := runDevWorker(t, ds, id, token, r, func(cfg *Config) {
		cfg.ReadIdleTimeout = 300 * time.Millisecond
		cfg.HeartbeatInterval = 20 * time.Millisecond
	})
	if _, err := ds.WaitWorker(ctx, id, func(v devstudio.WorkerView) bool { return v.Sessions == 1 && v.Connected }); err != nil {
		t.Fatal(err)
	}
	if err := ds.SetSilent(id, true); err != nil {
		t.Fatal(err)
	}
	if _, err := ds.WaitWorker(ctx, id, func(v devstudio.WorkerView) bool { return v.Sessions == 2 && v.Connected }); err != nil {
		t.Fatalf("no reconnect after the silent socket: %v", err)
	}

	started := make(chan struct{})
	proceed := make(chan struct{})
	first := true
	r.set("job-1", func(ctx context.Context, cl *protocol.JobOfferClaim, rep Reporter) {
		if first {
			first = false
			close(started)
			<-proceed
			r.errs <- rep.CompleteJSON(ctx, json.RawMessage(`{"late":true}`), cl.Task.Prompt())
			return
		}
		r.errs <- rep.CompleteJSON(ctx, json.RawMessage(`{"second":true}`), cl.Task.Prompt())
	})
	job, err := ds.Submit("synthetic-llm", json.RawMessage(`{"kind":"llm","messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, started, "job to start")
	if err := ds.DropWorker(id); err != nil {
		t.Fatal(err)
	}
	if _, err := ds.WaitWorker(ctx, id, func(v devstudio.WorkerView) bool { return v.Sessions == 3 && v.Connected }); err != nil {
		t.Fatalf("no reconnect after the drop: %v", err)
	}
	if got := c.Status().CurrentJobID; got != job {
		t.Errorf("current job after reconnect = %q, want %q", got, job)
	}
	close(proceed)
	if err := waitFor(t, r.errs, "the first run's report"); !errors.Is(err, ErrSessionClosed) {
		t.Errorf("report from the dropped session = %v, want ErrSessionClosed", err)
	}
	v, err := ds.WaitJob(ctx, job, func(v devstudio.JobView) bool { return v.Status == devstudio.JobCompleted })
	if err != nil || !strings.Contains(string(v.Result), "second") {
		t.Fatalf("job = %+v, %v; want completed by the second run", v, err)
	}
	if err := waitFor(t, r.errs, "the second run's report"); err != nil {
		t.Errorf("second run: %v", err)
	}
}

// TestDevStudioDuplicateWorker: a second process with the same credentials
// takes over; the first stops for good instead of fighting back.
func TestDevStudioDuplicateWorker(t *testing.T) {
	ds := newDevStudio(t, devstudio.Config{})
	ctx := ctxLimit(t)
	id, token, err := ds.AddWorker("w-dup")
	if err != nil {
		t.Fatal(err)
	}
	r := &devRunner{override: map[string]func(context.Context, *protocol.JobOfferClaim, Reporter){}, errs: make(chan error, 10)}
	_, done1, _ := runDevWorker(t, ds, id, token, r, nil)
	if _, err := ds.WaitWorker(ctx, id, func(v devstudio.WorkerView) bool { return v.Sessions == 1 }); err != nil {
		t.Fatal(err)
	}
	runDevWorker(t, ds, id, token, r, nil)
	err = waitFor(t, done1, "the first worker to stop")
	done1 <- err
	var fe *FatalError
	if !errors.As(err, &fe) || fe.Code != protocol.CodeDuplicateWorker {
		t.Fatalf("first Run = %v, want duplicate_worker", err)
	}
	if _, err := ds.WaitWorker(ctx, id, func(v devstudio.WorkerView) bool { return v.Sessions == 2 && v.Connected }); err != nil {
		t.Fatal(err)
	}
}
