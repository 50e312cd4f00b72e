package plugins_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/stokerhq/stoker/internal/syncbuf"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"

	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/plugins/plugintest"
)

// The test binary doubles as a plugin: launched with envServe set, it
// serves testEngine instead of running tests (go-plugin's helperProcess
// pattern), so crashes and lies need no separate build.
const envServe = "STOKER_SDK_TEST_SERVE"

// serveAutoMTLS as envServe's value serves as a plugin that makes its own
// certificate (go-plugin's AutoMTLS) instead of using the host's.
const serveAutoMTLS = "automtls"

func TestMain(m *testing.M) {
	if mode := os.Getenv(envServe); mode != "" {
		log := plugins.NewLogger("sdktest")
		log.Info("test plugin starting", "pid", os.Getpid())
		if mode == serveAutoMTLS {
			plugins.ServeAutoMTLS(&testEngine{log: log})
			return
		}
		plugins.Serve(&testEngine{log: log})
		return
	}
	goleak.VerifyTestMain(m)
}

// testEngine misbehaves on request: the LLM prompt (the last message)
// names what it does.
type testEngine struct{ log hclog.Logger }

func (e *testEngine) Describe(context.Context) (*plugins.Description, error) {
	return &plugins.Description{
		Name: "sdktest", Version: "0.0.1", ContractVersion: plugins.ContractVersion,
		Engines: []string{"sdktest"}, Kinds: []plugins.TaskKind{plugins.KindLLM, plugins.KindImage},
		Models: map[plugins.TaskKind][]string{plugins.KindLLM: {"sdktest"}},
		Device: plugins.Device{Backend: "cpu"}, Ready: true,
	}, nil
}

func (e *testEngine) Run(ctx context.Context, req *plugins.RunRequest, ev plugins.Events) error {
	switch req.Task.Kind {
	case plugins.KindImage:
		// Width × Height bytes of a deterministic pattern, in 1 MiB calls
		// (larger than a wire chunk, so the SDK must split them).
		n := int(req.Task.Image.Width) * int(req.Task.Image.Height)
		buf := make([]byte, 1<<20)
		for i := range buf {
			buf[i] = byte(i * 7)
		}
		for n > 0 {
			k := min(n, len(buf))
			if err := ev.Output("bin", buf[:k]); err != nil {
				return err
			}
			n -= k
		}
		return nil
	case plugins.KindLLM:
	default:
		return plugins.Errorf(plugins.ErrUnsupported, "cannot serve %s", req.Task.Kind)
	}
	switch prompt := req.Task.Prompt(); prompt {
	case "segv":
		fmt.Fprintln(os.Stderr, "about to segfault: marker-1234")
		_ = syscall.Kill(os.Getpid(), syscall.SIGSEGV)
		select {}
	case "sigkill":
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	case "exit3":
		os.Exit(3)
		return nil
	case "engine-error":
		return plugins.Errorf(plugins.ErrEngine, "model file is corrupt")
	case "bad-input":
		return plugins.Errorf(plugins.ErrBadInput, "messages are empty")
	case "node-limit":
		return plugins.Errorf(plugins.ErrNodeLimit, "2048x2048 is over this node's STOKER_SDCPP_MAX_SIDE")
	case "invent-kind":
		return &plugins.JobError{Kind: plugins.ErrPoison, Message: "I say this is poison"}
	case "lie-ext":
		return ev.Output("../../etc/x", []byte("x"))
	case "lie-json":
		return ev.Result([]byte(`"just a string"`))
	case "lie-nothing":
		return nil
	case "wire-job":
		job, ok := plugins.WireJob(ctx)
		js, _ := json.Marshal(map[string]any{"job": job, "jobs": ok})
		return ev.Result(js)
	case "progress-flood":
		// Far more reports than any host takes; none may wait for it.
		for i := range uint64(progressFlood) {
			if err := ev.Progress(i+1, progressFlood, "token"); err != nil {
				return err
			}
		}
		return ev.Result([]byte(`{"flooded":true}`))
	case "hang":
		e.log.Info("hanging until cancelled")
		if err := ev.Progress(0, 1, "token"); err != nil {
			return err
		}
		<-ctx.Done()
		return ctx.Err()
	default:
		_ = ev.Progress(1, 1, "token")
		_ = ev.Log("info", "answering "+prompt)
		js, _ := json.Marshal(map[string]string{"echo": prompt})
		return ev.Result(js)
	}
}

// launch starts the test binary as a plugin.
func launch(t testing.TB, logger hclog.Logger) *plugins.Plugin {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p, err := plugins.Launch(plugins.LaunchConfig{Path: exe, Env: []string{envServe + "=1"}, Logger: logger})
	if err != nil {
		t.Fatalf("Launch: %v", err)
	}
	t.Cleanup(p.Kill)
	return p
}

func llm(prompt string) *plugins.RunRequest {
	return &plugins.RunRequest{JobID: "job-1", Engine: "sdktest", Task: plugins.Task{
		Kind: plugins.KindLLM, LLM: &plugins.LLMTask{Messages: []plugins.Message{{Role: "user", Content: prompt}}},
	}}
}

func TestLaunchDescribeAndRun(t *testing.T) {
	var logs syncBuffer
	p := launch(t, hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Debug}))
	d, err := p.Describe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "sdktest" || !d.Ready || len(d.Engines) != 1 {
		t.Errorf("Describe() = %+v", d)
	}
	rec, err := plugintest.Run(context.Background(), p, llm("hello"))
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got, want := string(rec.JSON()), `{"echo":"hello"}`; got != want {
		t.Errorf("result %s, want %s", got, want)
	}
	if got := rec.Logs(); len(got) != 1 || got[0] != "info: answering hello" {
		t.Errorf("logs %q", got)
	}
	if len(rec.Events()) != 1 {
		t.Errorf("progress events %v, want one", rec.Events())
	}
	p.Kill()
	// The plugin's own hclog line was folded into ours under its name.
	if !strings.Contains(logs.String(), "test plugin starting") {
		t.Errorf("host log lacks the plugin's line:\n%s", logs.String())
	}
}

func TestLargeOutputStreamsIntact(t *testing.T) {
	p := launch(t, nil)
	const side = 8192 // 64 MiB
	req := &plugins.RunRequest{JobID: "big", Engine: "sdktest", Task: plugins.Task{
		Kind: plugins.KindImage, Image: &plugins.ImageTask{Prompt: "big", Width: side, Height: side},
	}}
	h := &hashEvents{h: sha256.New()}
	if err := p.Run(context.Background(), req, h); err != nil {
		t.Fatal(err)
	}
	want := sha256.New()
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	for range side * side / len(buf) {
		want.Write(buf)
	}
	if h.n != side*side {
		t.Errorf("got %d bytes, want %d", h.n, side*side)
	}
	if !bytes.Equal(h.h.Sum(nil), want.Sum(nil)) {
		t.Errorf("sha256 differs")
	}
	if h.maxChunk > 512<<10 {
		t.Errorf("largest chunk %d bytes, want <= 512 KiB", h.maxChunk)
	}
}

func TestTypedFailures(t *testing.T) {
	p := launch(t, nil)
	tests := []struct {
		prompt    string
		kind      plugins.ErrorKind
		retryable bool
		contains  string
	}{
		{"engine-error", plugins.ErrEngine, true, "model file is corrupt"},
		{"bad-input", plugins.ErrBadInput, false, "messages are empty"},
		{"node-limit", plugins.ErrNodeLimit, true, "over this node's"},
		{"invent-kind", plugins.ErrEngine, true, "poison"},
		{"lie-ext", plugins.ErrEngine, true, "output extension"},
		{"lie-json", plugins.ErrEngine, true, "not a JSON object or array"},
		{"lie-nothing", plugins.ErrEngine, true, "neither output nor result"},
	}
	for _, tt := range tests {
		t.Run(tt.prompt, func(t *testing.T) {
			_, err := plugintest.Run(context.Background(), p, llm(tt.prompt))
			je := plugins.AsJobError(err)
			if je == nil || je.Kind != tt.kind || je.Retryable() != tt.retryable || !strings.Contains(je.Error(), tt.contains) {
				t.Errorf("got %v (kind %v), want kind %s retryable %v containing %q", err, kindOf(je), tt.kind, tt.retryable, tt.contains)
			}
		})
	}
	// After every failure the same plugin still serves.
	if _, err := plugintest.Run(context.Background(), p, llm("still here")); err != nil {
		t.Errorf("plugin stopped serving: %v", err)
	}
}

func TestCrashIsReportedWithStatusAndStderr(t *testing.T) {
	tests := []struct {
		prompt, signal string
		code           int
		stderr         string
	}{
		// The Go runtime catches SIGSEGV, prints it and exits 2.
		{prompt: "segv", signal: "SIGSEGV", code: 2, stderr: "SIGSEGV"},
		{prompt: "sigkill", signal: "SIGKILL", code: -1},
		{prompt: "exit3", code: 3},
	}
	for _, tt := range tests {
		t.Run(tt.prompt, func(t *testing.T) {
			p := launch(t, nil)
			_, err := plugintest.Run(context.Background(), p, llm(tt.prompt))
			var je *plugins.JobError
			if !errors.As(err, &je) || je.Kind != plugins.ErrCrashed || !je.Retryable() {
				t.Fatalf("got %v, want a retryable crash", err)
			}
			if je.Signal != tt.signal || je.ExitCode != tt.code {
				t.Errorf("signal %q code %d, want %q %d", je.Signal, je.ExitCode, tt.signal, tt.code)
			}
			if tt.stderr != "" && !strings.Contains(je.Error(), tt.stderr) {
				t.Errorf("error %q lacks %q", je.Error(), tt.stderr)
			}
			select {
			case <-p.Exited():
			default:
				t.Errorf("Exited not closed after a crash was reported")
			}
		})
	}
}

func TestCancelStopsTheJobNotThePlugin(t *testing.T) {
	p := launch(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	ev := &startedEvents{started: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, llm("hang"), ev) }()
	<-ev.started // the plugin is inside Run
	cancel()
	err := <-done
	if je := plugins.AsJobError(err); je == nil || je.Kind != plugins.ErrCancelled {
		t.Fatalf("got %v, want %s", err, plugins.ErrCancelled)
	}
	if _, err := plugintest.Run(context.Background(), p, llm("after cancel")); err != nil {
		t.Errorf("plugin stopped serving after a cancel: %v", err)
	}
}

// startedEvents closes started at the first progress event.
type startedEvents struct {
	plugintest.Recorder
	once    sync.Once
	started chan struct{}
}

func (s *startedEvents) Progress(step, total uint64, unit string) error {
	s.once.Do(func() { close(s.started) })
	return nil
}

func TestLaunchRefusesANonPlugin(t *testing.T) {
	// /bin/true exits at once without a handshake.
	_, err := plugins.Launch(plugins.LaunchConfig{Path: "/bin/true"})
	if err == nil {
		t.Fatal("Launch(/bin/true) succeeded, want an error")
	}
}

func TestInProcessConformance(t *testing.T) {
	e := plugintest.Connect(t, &testEngine{log: hclog.NewNullLogger()})
	plugintest.Conformance(t, e, plugintest.Case{
		Name: "echo",
		Req:  *llm("conform"),
		Check: func(t *testing.T, r *plugintest.Recorder, err error) {
			if err != nil || string(r.JSON()) != `{"echo":"conform"}` {
				t.Errorf("got %s, %v", r.JSON(), err)
			}
		},
	})
}

func kindOf(je *plugins.JobError) plugins.ErrorKind {
	if je == nil {
		return ""
	}
	return je.Kind
}

type hashEvents struct {
	h interface {
		Write([]byte) (int, error)
		Sum([]byte) []byte
	}
	n, maxChunk int
}

func (h *hashEvents) Progress(uint64, uint64, string) error { return nil }
func (h *hashEvents) Log(string, string) error              { return nil }
func (h *hashEvents) Result([]byte) error                   { return nil }
func (h *hashEvents) Output(_ string, p []byte) error {
	h.h.Write(p)
	h.n += len(p)
	h.maxChunk = max(h.maxChunk, len(p))
	return nil
}

// syncBuffer is a concurrency-safe log sink.
type syncBuffer = syncbuf.Buffer
