package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/supervisor/internal/engines"
	"github.com/stokerhq/stoker/supervisor/internal/models"
	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

// fakeEngines runs a function as the engine.
type fakeEngines struct {
	run   func(ctx context.Context, req *plugins.RunRequest, ev plugins.Events) error
	check func(jobID, engine string, kind plugins.TaskKind) error
}

func (f fakeEngines) Check(jobID, engine string, kind plugins.TaskKind) error {
	if f.check == nil {
		return nil
	}
	return f.check(jobID, engine, kind)
}
func (f fakeEngines) Run(ctx context.Context, req *plugins.RunRequest, ev plugins.Events) error {
	return f.run(ctx, req, ev)
}

// fakeModels serves no files; refuse makes every fetch a refusal, and
// inputErr is every input fetch's error.
type fakeModels struct {
	refuse   bool
	inputErr error
}

func (f fakeModels) Acquire(ctx context.Context, model string, files []models.File) ([]models.Local, *models.Lease, error) {
	if f.refuse && len(files) > 0 {
		return nil, nil, &models.Error{Op: "fetch", URL: files[0].URL, Err: models.ErrRefused}
	}
	return nil, nil, nil
}

func (f fakeModels) FetchInput(context.Context, string, models.InputKind, string) (string, error) {
	if f.inputErr != nil {
		return "", f.inputErr
	}
	return "", errors.New("no inputs here")
}

// reporter records what the runner reports. Its Upload reads each
// attempt's body fully; failFirst makes the first attempt fail after
// reading part of it, as a dropped connection would.
type reporter struct {
	failFirst bool

	mu       sync.Mutex
	uploads  [][]byte
	uploadOK bool
	json     []byte
	fails    []string
	retry    []bool
}

func (r *reporter) CompleteJSON(_ context.Context, result json.RawMessage, _ string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.json = result
	return nil
}

func (r *reporter) Upload(_ context.Context, _, _ string, open func() (io.ReadCloser, error)) error {
	for attempt := 1; attempt <= 3; attempt++ {
		rc, err := open()
		if err != nil {
			return err
		}
		var got []byte
		if attempt == 1 && r.failFirst {
			buf := make([]byte, 10)
			n, _ := io.ReadFull(rc, buf)
			got = buf[:n]
			rc.Close()
		} else {
			got, err = io.ReadAll(rc)
			rc.Close()
		}
		r.mu.Lock()
		r.uploads = append(r.uploads, got)
		r.mu.Unlock()
		if attempt == 1 && r.failFirst {
			continue
		}
		if err != nil {
			return err
		}
		r.mu.Lock()
		r.uploadOK = true
		r.mu.Unlock()
		return nil
	}
	return errors.New("upload: out of attempts")
}

func (r *reporter) Fail(_ context.Context, msg string, retryable bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fails = append(r.fails, msg)
	r.retry = append(r.retry, retryable)
	return nil
}

func claim(kind protocol.TaskKind, files ...protocol.ModelFile) *protocol.JobOfferClaim {
	c := &protocol.JobOfferClaim{JobID: "job-1", Model: "m", ModelSource: &protocol.ModelSource{
		Engine: "e", Files: files, CliDefaults: &protocol.ModelCliDefaults{CfgScale: 1, Steps: 1, Width: 1, Height: 1},
	}}
	switch kind {
	case protocol.KindImage:
		c.Task = &protocol.Task{Kind: kind, Image: &protocol.ImageParams{Prompt: "p"}}
	case protocol.KindLLM:
		c.Task = &protocol.Task{Kind: kind, LLM: &protocol.LlmParams{Messages: []protocol.Message{{Role: "user", Content: "hi"}}}}
	}
	return c
}

func newRunner(t *testing.T, e fakeEngines, m fakeModels) *Runner {
	t.Helper()
	r, err := New(Config{Engines: e, Models: m, WorkDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func chunks(ev plugins.Events, parts ...string) error {
	for _, p := range parts {
		if err := ev.Output("png", []byte(p)); err != nil {
			return err
		}
	}
	return nil
}

func TestBinaryResultStreamsAndRetriesFromTheSpool(t *testing.T) {
	want := strings.Repeat("0123456789", 1000)
	for _, failFirst := range []bool{false, true} {
		rep := &reporter{failFirst: failFirst}
		r := newRunner(t, fakeEngines{run: func(_ context.Context, _ *plugins.RunRequest, ev plugins.Events) error {
			return chunks(ev, want[:5000], want[5000:])
		}}, fakeModels{})
		r.RunJob(context.Background(), claim(protocol.KindImage), rep)
		last := rep.uploads[len(rep.uploads)-1]
		if !rep.uploadOK || string(last) != want || len(rep.fails) != 0 {
			t.Errorf("failFirst=%v: uploaded %d bytes (ok %v), fails %q; want the whole result once", failFirst, len(last), rep.uploadOK, rep.fails)
		}
		if failFirst && len(rep.uploads) != 2 {
			t.Errorf("%d attempts, want 2", len(rep.uploads))
		}
	}
}

func TestEngineFailingMidOutputIsOneFail(t *testing.T) {
	rep := &reporter{}
	r := newRunner(t, fakeEngines{run: func(_ context.Context, _ *plugins.RunRequest, ev plugins.Events) error {
		if err := chunks(ev, "first half"); err != nil {
			return err
		}
		return plugins.Errorf(plugins.ErrEngine, "decoder exploded")
	}}, fakeModels{})
	r.RunJob(context.Background(), claim(protocol.KindImage), rep)
	if rep.uploadOK || len(rep.fails) != 1 || !rep.retry[0] || !strings.Contains(rep.fails[0], "decoder exploded") {
		t.Errorf("upload ok %v, fails %q %v; want exactly one retryable fail with the engine's message", rep.uploadOK, rep.fails, rep.retry)
	}
}

func TestOutcomesAreTyped(t *testing.T) {
	tests := []struct {
		name      string
		engine    func(context.Context, *plugins.RunRequest, plugins.Events) error
		models    fakeModels
		claim     *protocol.JobOfferClaim
		retryable bool
		contains  string
	}{
		{"refused model url is bad input", nil, fakeModels{refuse: true},
			claim(protocol.KindLLM, protocol.ModelFile{Role: "model", URL: "ftp://x/m.gguf", Filename: "m.gguf"}), false, "bad_input"},
		{"binary output for an llm job", func(_ context.Context, _ *plugins.RunRequest, ev plugins.Events) error {
			return chunks(ev, "png bytes")
		}, fakeModels{}, claim(protocol.KindLLM), true, "engine_error"},
		{"json result for an image job", func(_ context.Context, _ *plugins.RunRequest, ev plugins.Events) error {
			return ev.Result([]byte(`{}`))
		}, fakeModels{}, claim(protocol.KindImage), true, "engine_error"},
		{"unsupported kind", func(context.Context, *plugins.RunRequest, plugins.Events) error {
			return plugins.Errorf(plugins.ErrUnsupported, "cannot serve image")
		}, fakeModels{}, claim(protocol.KindImage), false, "cannot serve"},
		{"crash with stderr", func(context.Context, *plugins.RunRequest, plugins.Events) error {
			return &plugins.JobError{Kind: plugins.ErrCrashed, Message: "plugin x crashed", Signal: "SIGSEGV",
				StderrTail: []string{"l1", "l2", "l3", "l4", "l5", "l6", "l7"}}
		}, fakeModels{}, claim(protocol.KindLLM), true, "l3 | l4 | l5 | l6 | l7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := &reporter{}
			run := tt.engine
			if run == nil {
				run = func(context.Context, *plugins.RunRequest, plugins.Events) error {
					t.Error("the engine ran")
					return nil
				}
			}
			newRunner(t, fakeEngines{run: run}, tt.models).RunJob(context.Background(), tt.claim, rep)
			if len(rep.fails) != 1 || rep.retry[0] != tt.retryable || !strings.Contains(rep.fails[0], tt.contains) {
				t.Errorf("fails %q retryable %v; want one with %q, retryable %v", rep.fails, rep.retry, tt.contains, tt.retryable)
			}
			if rep.json != nil || rep.uploadOK {
				t.Errorf("a result was reported besides the failure")
			}
		})
	}
}

func TestFailMessageIsBounded(t *testing.T) {
	msg := FailMessage(&plugins.JobError{Kind: plugins.ErrEngine, Message: strings.Repeat("x", 10000)})
	if len(msg) > maxFailMessage || !bytes.HasPrefix([]byte(msg), []byte("engine_error: x")) {
		t.Errorf("message of %d bytes: %.40q", len(msg), msg)
	}
}

// TestAdmitCodes: an engine that is only briefly unavailable is refused
// busy (the studio requeues the job without counting an attempt); any
// other refusal carries no code, so the studio offers the job elsewhere.
func TestAdmitCodes(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want protocol.RejectCode
	}{
		{"quarantined", fmt.Errorf("%w: engine e is quarantined", engines.ErrUnavailable), protocol.RejectBusy},
		{"refused job", errors.New("job j brought down 2 x instances on this node"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRunner(t, fakeEngines{check: func(string, string, plugins.TaskKind) error { return tt.err }}, fakeModels{})
			err := r.Admit(claim(protocol.KindLLM))
			var code protocol.RejectCode
			var coded interface{ RejectCode() protocol.RejectCode }
			if errors.As(err, &coded) {
				code = coded.RejectCode()
			}
			if err == nil || code != tt.want || err.Error() != tt.err.Error() {
				t.Errorf("Admit = %v with code %q, want %q with code %q", err, code, tt.err, tt.want)
			}
		})
	}
}

func u32(v uint32) *uint32   { return &v }
func f32(v float32) *float32 { return &v }

// TestTaskBoundsAreNodeLimits: a task value over this node's bounds fails
// the job as node_limit, retryable, before anything is fetched or run.
func TestTaskBoundsAreNodeLimits(t *testing.T) {
	image := func(w, h, steps uint32) *protocol.JobOfferClaim {
		c := claim(protocol.KindImage)
		c.Task.Image.Width, c.Task.Image.Height, c.Task.Image.Steps = u32(w), u32(h), u32(steps)
		return c
	}
	llm := func(maxTokens uint32, content string) *protocol.JobOfferClaim {
		c := claim(protocol.KindLLM)
		c.Task.LLM.MaxTokens = u32(maxTokens)
		c.Task.LLM.Messages[0].Content = content
		return c
	}
	video := func(seconds float32) *protocol.JobOfferClaim {
		c := claim(protocol.KindImage)
		c.Task = &protocol.Task{Kind: protocol.KindVideo, Video: &protocol.VideoParams{Prompt: "p", Seconds: f32(seconds)}}
		return c
	}
	tests := []struct {
		name  string
		claim *protocol.JobOfferClaim
		words string
	}{
		{"width", image(4294967295, 512, 20), "image width 4294967295"},
		{"height", image(512, 20000, 20), "image height 20000"},
		{"steps", image(512, 512, 1000000), "image steps 1000000"},
		{"max tokens", llm(4000000000, "hi"), "maxTokens 4000000000"},
		{"prompt length", llm(16, strings.Repeat("x", 4<<20)), "text"},
		{"video seconds", video(1e9), "video seconds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := &reporter{}
			r := newRunner(t, fakeEngines{run: func(context.Context, *plugins.RunRequest, plugins.Events) error {
				t.Error("the engine ran")
				return nil
			}}, fakeModels{})
			r.RunJob(context.Background(), tt.claim, rep)
			if len(rep.fails) != 1 || !rep.retry[0] || !strings.HasPrefix(rep.fails[0], "node_limit: ") || !strings.Contains(rep.fails[0], tt.words) {
				t.Errorf("fails %q retryable %v; want one retryable node_limit naming %q", rep.fails, rep.retry, tt.words)
			}
		})
	}
	t.Run("the largest real values pass", func(t *testing.T) {
		ran := false
		r := newRunner(t, fakeEngines{run: func(_ context.Context, _ *plugins.RunRequest, ev plugins.Events) error {
			ran = true
			return chunks(ev, "png")
		}}, fakeModels{})
		r.RunJob(context.Background(), image(2048, 2048, 150), &reporter{})
		if !ran {
			t.Errorf("a 2048x2048, 150-step image did not run")
		}
	})
}

// TestInputOverTheNodeLimitIsRetryable: an input over this node's size
// limit is bad input here only.
func TestInputOverTheNodeLimitIsRetryable(t *testing.T) {
	rep := &reporter{}
	c := claim(protocol.KindImage)
	c.Task.Image.InitImageURL = "https://cdn.example/big.png"
	r := newRunner(t, fakeEngines{run: func(context.Context, *plugins.RunRequest, plugins.Events) error {
		t.Error("the engine ran")
		return nil
	}}, fakeModels{inputErr: &models.Error{Op: "input", Err: fmt.Errorf("%w: body over the limit of 268435456 bytes", models.ErrTooLarge)}})
	r.RunJob(context.Background(), c, rep)
	if len(rep.fails) != 1 || !rep.retry[0] || !strings.HasPrefix(rep.fails[0], "node_limit: ") {
		t.Errorf("fails %q retryable %v; want one retryable node_limit", rep.fails, rep.retry)
	}
}

// endless writes 64 KiB chunks until Output refuses one, or up to 256 MiB.
func endless(_ context.Context, _ *plugins.RunRequest, ev plugins.Events) error {
	chunk := make([]byte, 64<<10)
	for range 4096 {
		if err := ev.Output("png", chunk); err != nil {
			return err
		}
	}
	return nil
}

// TestSpoolIsBounded: a plugin writing output without end fails its job
// at the output bound (final: every node has it), and one that would fill
// the disk fails at the free-space reserve (retryable: a node with more
// disk may take it); nothing is uploaded either way.
func TestSpoolIsBounded(t *testing.T) {
	tests := []struct {
		name      string
		cfg       Config
		kind      string
		retryable bool
	}{
		{"over the output bound", Config{MaxOutputBytes: 1 << 20}, "bad_input: ", false},
		{"into the disk reserve", Config{MinFreeBytes: 1 << 62}, "node_limit: ", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Engines, cfg.Models, cfg.WorkDir = fakeEngines{run: endless}, fakeModels{}, t.TempDir()
			r, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			rep := &reporter{}
			r.RunJob(context.Background(), claim(protocol.KindImage), rep)
			if len(rep.fails) != 1 || rep.retry[0] != tt.retryable || !strings.HasPrefix(rep.fails[0], tt.kind) || rep.uploadOK {
				t.Errorf("fails %q retryable %v uploaded %v; want one %s fail, retryable %v", rep.fails, rep.retry, rep.uploadOK, tt.kind, tt.retryable)
			}
		})
	}
}
