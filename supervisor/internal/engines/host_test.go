package engines_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/plugins/plugintest"
	"github.com/stokerhq/stoker/supervisor/internal/backoff"
	"github.com/stokerhq/stoker/supervisor/internal/engines"
)

// The test binary doubles as a plugin (go-plugin's helperProcess pattern).
const envServe = "STOKER_ENGINES_TEST_SERVE"

// envDie makes the test plugin exit 50ms after it described itself: a
// plugin dying over and over at idle.
const envDie = "STOKER_ENGINES_TEST_DIE"

func TestMain(m *testing.M) {
	if os.Getenv(envServe) != "" {
		plugins.Serve(testEngine{})
		return
	}
	goleak.VerifyTestMain(m)
}

type testEngine struct{}

func (testEngine) Describe(context.Context) (*plugins.Description, error) {
	if os.Getenv(envDie) != "" {
		go func() {
			time.Sleep(50 * time.Millisecond) // the fault: dying at idle
			os.Exit(1)
		}()
	}
	return &plugins.Description{
		Name: "hosttest", Version: "1", ContractVersion: plugins.ContractVersion,
		Engines: []string{"hosttest"}, Kinds: []plugins.TaskKind{plugins.KindLLM},
		Models: map[plugins.TaskKind][]string{plugins.KindLLM: {"hosttest-llm"}}, Ready: true,
	}, nil
}

func (testEngine) Run(ctx context.Context, req *plugins.RunRequest, ev plugins.Events) error {
	switch req.Task.Prompt() {
	case "crash":
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	case "stall":
		<-ctx.Done() // says nothing: the watchdog must act
		return ctx.Err()
	case "progress-forever":
		// Never stalls, never ends: only a deadline stops it.
		for step := uint64(0); ; step++ {
			if err := ev.Progress(step, 0, "tick"); err != nil {
				return err
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	js, _ := json.Marshal(map[string]string{"pid": "ok"})
	return ev.Result(js)
}

func startHost(t *testing.T, cfg engines.Config) *engines.Host {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Plugins = []string{exe}
	cfg.Env = append(cfg.Env, envServe+"=1")
	h, err := engines.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func llm(job, prompt string) *plugins.RunRequest {
	return &plugins.RunRequest{JobID: job, Engine: "hosttest", Task: plugins.Task{Kind: plugins.KindLLM,
		LLM: &plugins.LLMTask{Messages: []plugins.Message{{Role: "user", Content: prompt}}}}}
}

// waitState waits for the plugin to reach want, on the host's change
// notices rather than on a timer.
func waitState(t *testing.T, h *engines.Host, want engines.State) engines.PluginStatus {
	t.Helper()
	return waitFor(t, h, want, 0)
}

// waitFor waits for state want after at least restarts relaunches.
func waitFor(t *testing.T, h *engines.Host, want engines.State, restarts int) engines.PluginStatus {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		if st := h.Status()[0]; st.State == want && st.Restarts >= restarts {
			return st
		}
		select {
		case <-h.Changed():
		case <-deadline:
			t.Fatalf("plugin state %s, want %s", h.Status()[0].State, want)
		}
	}
}

func TestRoutingAndOfferings(t *testing.T) {
	h := startHost(t, engines.Config{})
	waitState(t, h, engines.StateReady)
	if got := h.Offerings()[plugins.KindLLM]; len(got) != 1 || got[0] != "hosttest-llm" {
		t.Errorf("Offerings = %v", h.Offerings())
	}
	if _, err := run(h, llm("j1", "hi")); err != nil {
		t.Fatalf("Run: %v", err)
	}
	tests := []struct {
		name string
		req  *plugins.RunRequest
		kind plugins.ErrorKind
	}{
		{"unknown engine", &plugins.RunRequest{JobID: "j2", Engine: "sd-cpp", Task: plugins.Task{Kind: plugins.KindImage, Image: &plugins.ImageTask{Prompt: "x"}}}, plugins.ErrNoEngine},
		{"unserved kind", &plugins.RunRequest{JobID: "j3", Engine: "hosttest", Task: plugins.Task{Kind: plugins.KindImage, Image: &plugins.ImageTask{Prompt: "x"}}}, plugins.ErrUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := run(h, tt.req)
			if je := plugins.AsJobError(err); je == nil || je.Kind != tt.kind {
				t.Errorf("got %v, want %s", err, tt.kind)
			}
		})
	}
}

func TestCrashRestartsAndPoison(t *testing.T) {
	h := startHost(t, engines.Config{Breaker: engines.Breaker{Crashes: 10}})
	waitState(t, h, engines.StateReady)
	first := h.Status()[0].Pid
	_, err := run(h, llm("bad", "crash"))
	if je := plugins.AsJobError(err); je == nil || je.Kind != plugins.ErrCrashed || je.Signal != "SIGKILL" || !je.Retryable() {
		t.Fatalf("got %v, want a retryable crash by SIGKILL", err)
	}
	st := waitFor(t, h, engines.StateReady, 1)
	if st.Pid == first || st.Restarts != 1 {
		t.Errorf("after the crash: pid %d (was %d), restarts %d; want a new process, 1 restart", st.Pid, first, st.Restarts)
	}
	if _, err := run(h, llm("good", "hi")); err != nil {
		t.Errorf("the relaunched plugin does not serve: %v", err)
	}
	// The same job crashing a second instance in a row is poison here, but
	// retryable: a bigger node may serve it (the studio's attempt count
	// bounds it).
	_, err = run(h, llm("bad", "crash"))
	if je := plugins.AsJobError(err); je == nil || je.Kind != plugins.ErrPoison || !je.Retryable() {
		t.Fatalf("got %v, want a retryable poison failure", err)
	}
	// This node refuses the job from now on, for good (not ErrUnavailable),
	// and takes others.
	waitFor(t, h, engines.StateReady, 2)
	if err := h.Check("bad", "hosttest", plugins.KindLLM); err == nil || errors.Is(err, engines.ErrUnavailable) {
		t.Errorf("Check(bad) = %v, want a refusal that is not ErrUnavailable", err)
	}
	if err := h.Check("good", "hosttest", plugins.KindLLM); err != nil {
		t.Errorf("Check(good) = %v, want nil", err)
	}
}

func TestCrashLoopQuarantines(t *testing.T) {
	h := startHost(t, engines.Config{Breaker: engines.Breaker{Crashes: 2, Window: time.Hour, Cooldown: time.Hour}})
	for i, job := range []string{"a", "b"} {
		waitFor(t, h, engines.StateReady, i)
		if _, err := run(h, llm(job, "crash")); err == nil {
			t.Fatalf("crash %d: no error", i)
		}
	}
	st := waitState(t, h, engines.StateQuarantined)
	if st.QuarantinedUntil.IsZero() {
		t.Errorf("no quarantine end time")
	}
	if len(h.Offerings()) != 0 {
		t.Errorf("a quarantined plugin still advertises %v", h.Offerings())
	}
	if err := h.Check("next", "hosttest", plugins.KindLLM); !errors.Is(err, engines.ErrUnavailable) {
		t.Errorf("Check = %v for a quarantined engine, want an error wrapping ErrUnavailable", err)
	}
}

// TestCheckRefusesARestartBackoff: a plugin that keeps dying at idle waits
// out a backoff before its next start; an offer meanwhile is refused as
// briefly unavailable (the studio loses no attempt), where an offer during
// an immediate relaunch is taken and waits.
func TestCheckRefusesARestartBackoff(t *testing.T) {
	h := startHost(t, engines.Config{Env: []string{envDie + "=1"}, Restart: backoff.Policy{Base: time.Hour, Max: time.Hour},
		Breaker: engines.Breaker{Crashes: 100}})
	deadline := time.After(30 * time.Second)
	for {
		st := h.Status()[0]
		if st.State == engines.StateRestarting && !st.NextStart.IsZero() {
			break
		}
		select {
		case <-h.Changed():
		case <-deadline:
			t.Fatalf("plugin never waited out a backoff: %+v", h.Status()[0])
		}
	}
	if err := h.Check("j", "hosttest", plugins.KindLLM); !errors.Is(err, engines.ErrUnavailable) {
		t.Errorf("Check = %v during a restart backoff, want an error wrapping ErrUnavailable", err)
	}
}

// TestJobDeadlineEndsEndlessProgress: a plugin that reports progress
// forever never stalls; the kind's hard deadline ends the job (retryable:
// a faster node may finish it) and the plugin is relaunched.
func TestJobDeadlineEndsEndlessProgress(t *testing.T) {
	h := startHost(t, engines.Config{JobTimeouts: map[plugins.TaskKind]time.Duration{plugins.KindLLM: 300 * time.Millisecond}})
	waitState(t, h, engines.StateReady)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second) // bounds the test if no deadline acts
	defer cancel()
	err := h.Run(ctx, llm("endless", "progress-forever"), &plugintest.Recorder{})
	if je := plugins.AsJobError(err); je == nil || je.Kind != plugins.ErrTimedOut || !je.Retryable() || !strings.Contains(je.Message, "300ms") {
		t.Fatalf("got %v, want a retryable %s naming the 300ms deadline", err, plugins.ErrTimedOut)
	}
	waitFor(t, h, engines.StateReady, 1)
	if _, err := run(h, llm("after", "hi")); err != nil {
		t.Errorf("next job: %v", err)
	}
}

func TestStallWatchdogKills(t *testing.T) {
	h := startHost(t, engines.Config{StallTimeout: 200 * time.Millisecond})
	waitState(t, h, engines.StateReady)
	_, err := run(h, llm("slow", "stall"))
	if je := plugins.AsJobError(err); je == nil || je.Kind != plugins.ErrStalled || !je.Retryable() {
		t.Fatalf("got %v, want a retryable stall", err)
	}
	waitFor(t, h, engines.StateReady, 1)
}

func run(h *engines.Host, req *plugins.RunRequest) (*plugintest.Recorder, error) {
	rec := &plugintest.Recorder{}
	return rec, h.Run(context.Background(), req, rec)
}
