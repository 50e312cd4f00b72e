package localjobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/supervisor/internal/jobslot"
	"github.com/stokerhq/stoker/supervisor/internal/localmodels"
	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

// fakeRunner stands for the job runner: run reports an outcome through
// rep. The real runner is exercised by the agent's end-to-end tests.
type fakeRunner struct {
	admit func(*protocol.JobOfferClaim) error
	run   func(ctx context.Context, claim *protocol.JobOfferClaim, rep Reporter)
}

func (f *fakeRunner) Admit(c *protocol.JobOfferClaim) error {
	if f.admit != nil {
		return f.admit(c)
	}
	return nil
}

func (f *fakeRunner) RunJob(ctx context.Context, c *protocol.JobOfferClaim, rep Reporter) {
	f.run(ctx, c, rep)
}

func newService(t *testing.T, r *fakeRunner, serves func(string, protocol.TaskKind) Availability) (*Service, *jobslot.Slot) {
	t.Helper()
	dir := t.TempDir()
	cat, err := localmodels.Open(filepath.Join(dir, localmodels.FileName), []localmodels.Model{
		{ID: "llm", Engine: "e", Files: []protocol.ModelFile{}, CliDefaults: &protocol.ModelCliDefaults{CfgScale: 1, Steps: 1, Width: 1, Height: 1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if serves == nil {
		serves = func(string, protocol.TaskKind) Availability { return Available }
	}
	slot := jobslot.New(1)
	s, err := New(Config{Models: cat, Runner: r, Slot: slot, Serves: serves, InputDir: filepath.Join(dir, "in"), History: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, slot
}

func llmTask(prompt string) protocol.Task {
	return protocol.Task{Kind: protocol.KindLLM, LLM: &protocol.LlmParams{Messages: []protocol.Message{{Role: "user", Content: prompt}}}}
}

func codeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// TestOutcomes: each way a local job ends, with its code and HTTP status.
func TestOutcomes(t *testing.T) {
	tests := []struct {
		name   string
		model  string
		serves Availability
		run    func(ctx context.Context, rep Reporter)
		code   Code
		status int
	}{
		{"completed", "llm", Available, func(ctx context.Context, rep Reporter) {
			rep.CompleteJSON(ctx, json.RawMessage(`{"object":"chat.completion"}`), "")
		}, "", http.StatusOK},
		{"unknown model", "nope", Available, nil, CodeUnknownModel, http.StatusBadRequest},
		{"wrong kind", "llm", WrongKind, nil, CodeWrongKind, http.StatusBadRequest},
		{"no engine", "llm", NoEngine, nil, CodeUnavailable, http.StatusServiceUnavailable},
		{"bad input", "llm", Available, func(ctx context.Context, rep Reporter) {
			rep.(interface {
				FailJob(context.Context, *plugins.JobError, string) error
			}).FailJob(ctx, &plugins.JobError{Kind: plugins.ErrBadInput, Message: "no"}, "bad_input: no")
		}, CodeBadInput, http.StatusBadRequest},
		{"crash", "llm", Available, func(ctx context.Context, rep Reporter) {
			rep.(interface {
				FailJob(context.Context, *plugins.JobError, string) error
			}).FailJob(ctx, &plugins.JobError{Kind: plugins.ErrCrashed, Message: "boom"}, "crashed: boom")
		}, CodeEngine, http.StatusInternalServerError},
		{"no outcome", "llm", Available, func(context.Context, Reporter) {}, CodeEngine, http.StatusInternalServerError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ran := false
			var slot *jobslot.Slot
			var s *Service
			s, slot = newService(t, &fakeRunner{run: func(ctx context.Context, c *protocol.JobOfferClaim, rep Reporter) {
				ran = true
				if h := slot.State().Holder; h != jobslot.Local {
					t.Errorf("job ran with the slot held by %q", h)
				}
				if !strings.HasPrefix(c.JobID, "local-") || c.Model != tt.model || c.ModelSource.Engine != "e" {
					t.Errorf("claim %+v", c)
				}
				tt.run(ctx, rep)
			}}, func(string, protocol.TaskKind) Availability { return tt.serves })
			res, err := s.Run(context.Background(), Request{Model: tt.model, Task: llmTask("hi")})
			if got := codeOf(err); got != tt.code {
				t.Fatalf("code: got %q (%v), want %q", got, err, tt.code)
			}
			if err != nil {
				if st := err.(*Error).HTTPStatus(); st != tt.status {
					t.Errorf("status: got %d, want %d", st, tt.status)
				}
			} else if string(res.JSON) != `{"object":"chat.completion"}` {
				t.Errorf("result %s", res.JSON)
			}
			if ran != (tt.run != nil) {
				t.Errorf("runner ran: %v", ran)
			}
			if h := slot.State().Holder; h != "" {
				t.Errorf("slot held by %q after the job", h)
			}
		})
	}
}

// TestBinaryResultAndText: a binary result comes back as a file; streamed
// text reaches the request's Text in order.
func TestBinaryResultAndText(t *testing.T) {
	s, _ := newService(t, &fakeRunner{run: func(ctx context.Context, c *protocol.JobOfferClaim, rep Reporter) {
		if tr, ok := rep.(interface{ Text(string) error }); ok {
			tr.Text("a")
			tr.Text("b")
		}
		rep.Upload(ctx, "png", "", func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("PNGDATA")), nil })
	}}, nil)
	var got []string
	res, err := s.Run(context.Background(), Request{Model: "llm", Task: llmTask("hi"), Text: func(p string) error { got = append(got, p); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	b, _ := io.ReadAll(res.File)
	if string(b) != "PNGDATA" || res.Ext != "png" || res.Size != 7 {
		t.Errorf("result %q %s %d", b, res.Ext, res.Size)
	}
	if strings.Join(got, "") != "ab" {
		t.Errorf("text %q", got)
	}
}

// TestQueueAndCancel: a request past the queue is refused at once; a
// waiting request whose client leaves gives up its place; Close cancels a
// running job.
func TestQueueAndCancel(t *testing.T) {
	started := make(chan struct{}, 1)
	s, slot := newService(t, &fakeRunner{run: func(ctx context.Context, c *protocol.JobOfferClaim, rep Reporter) {
		started <- struct{}{}
		<-ctx.Done()
		rep.(interface {
			FailJob(context.Context, *plugins.JobError, string) error
		}).FailJob(ctx, &plugins.JobError{Kind: plugins.ErrCancelled, Message: "cancelled"}, "cancelled")
	}}, nil)
	if !slot.TryAcquire(jobslot.Studio) {
		t.Fatal("slot")
	}
	ctx, cancel := context.WithCancel(context.Background())
	waited := make(chan error, 1)
	queued := make(chan struct{})
	go func() {
		_, err := s.Run(ctx, Request{Model: "llm", Task: llmTask("hi"), Queued: func() { close(queued) }})
		waited <- err
	}()
	<-queued
	for slot.State().Waiting != 1 {
		// The request is between Queued and the queue; the slot's state is
		// all there is to wait on.
		runtime.Gosched()
	}
	if _, err := s.Run(context.Background(), Request{Model: "llm", Task: llmTask("hi")}); codeOf(err) != CodeQueueFull {
		t.Fatalf("past the queue: got %v, want queue_full", err)
	}
	cancel()
	if err := <-waited; codeOf(err) != CodeCancelled {
		t.Fatalf("left while waiting: got %v, want cancelled", err)
	}
	slot.Release()

	done := make(chan error, 1)
	go func() {
		_, err := s.Run(context.Background(), Request{Model: "llm", Task: llmTask("hi")})
		done <- err
	}()
	<-started
	s.Close()
	if err := <-done; codeOf(err) != CodeCancelled {
		t.Fatalf("after Close: got %v, want cancelled", err)
	}
	tot := s.Totals()
	if tot.Refused != 2 || tot.Failed != 1 || tot.Completed != 0 {
		t.Errorf("totals %+v, want 2 refused, 1 failed", tot)
	}
	recent := s.Recent()
	if len(recent) != 2 || recent[0].State != StateFailed || recent[0].Code != CodeCancelled {
		t.Errorf("recent (History 2) %+v", recent)
	}
}

// TestImageSizeFromModel: an image request without a size gets the
// model's own; one with a size keeps it.
func TestImageSizeFromModel(t *testing.T) {
	var got []string
	s, _ := newService(t, &fakeRunner{run: func(ctx context.Context, c *protocol.JobOfferClaim, rep Reporter) {
		got = append(got, fmt.Sprintf("%dx%d", *c.Task.Image.Width, *c.Task.Image.Height))
		rep.Upload(ctx, "png", "", func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("x")), nil })
	}}, nil)
	w, h := uint32(32), uint32(16)
	for _, p := range []*protocol.ImageParams{{Prompt: "p"}, {Prompt: "p", Width: &w, Height: &h}} {
		res, err := s.Run(context.Background(), Request{Model: "llm", Task: protocol.Task{Kind: protocol.KindImage, Image: p}})
		if err != nil {
			t.Fatal(err)
		}
		res.Close()
	}
	if strings.Join(got, ",") != "1x1,32x16" {
		t.Errorf("sizes %v, want the model's 1x1, then 32x16", got)
	}
}

// TestShutdown: the drain lets a running job finish and refuses new
// requests; past its context it cancels what still runs.
func TestShutdown(t *testing.T) {
	started, finish := make(chan struct{}, 1), make(chan struct{})
	s, _ := newService(t, &fakeRunner{run: func(ctx context.Context, c *protocol.JobOfferClaim, rep Reporter) {
		started <- struct{}{}
		select {
		case <-finish:
			rep.CompleteJSON(ctx, json.RawMessage(`{}`), "")
		case <-ctx.Done():
			rep.(interface {
				FailJob(context.Context, *plugins.JobError, string) error
			}).FailJob(ctx, &plugins.JobError{Kind: plugins.ErrCancelled, Message: "cancelled"}, "cancelled")
		}
	}}, nil)
	run := func() chan error {
		ch := make(chan error, 1)
		go func() {
			_, err := s.Run(context.Background(), Request{Model: "llm", Task: llmTask("hi")})
			ch <- err
		}()
		return ch
	}
	first := run()
	<-started
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	for {
		s.mu.Lock()
		stopping := s.stopping
		s.mu.Unlock()
		if stopping {
			break
		}
		runtime.Gosched() // the Shutdown goroutine is about to set it
	}
	if _, err := s.Run(context.Background(), Request{Model: "llm", Task: llmTask("hi")}); codeOf(err) != CodeUnavailable {
		t.Fatalf("a request during the drain: %v, want unavailable", err)
	}
	close(finish)
	if err := <-first; err != nil {
		t.Fatalf("the running job: %v, want it completed", err)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}

	s2, _ := newService(t, &fakeRunner{run: func(ctx context.Context, c *protocol.JobOfferClaim, rep Reporter) {
		started <- struct{}{}
		<-ctx.Done()
		rep.Fail(ctx, "cancelled", true)
	}}, nil)
	s = s2
	second := run()
	<-started
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(errors.New("drain timeout"))
	if err := s2.Shutdown(ctx); err == nil || err.Error() != "drain timeout" {
		t.Fatalf("Shutdown past its context: %v, want the cause", err)
	}
	if err := <-second; err == nil {
		t.Fatal("the job cancelled by Shutdown succeeded")
	}
}
