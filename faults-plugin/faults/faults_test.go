package faults_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stokerhq/stoker/faults-plugin/faults"
	"github.com/stokerhq/stoker/internal/cgrouptest"
	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/plugins/plugintest"
)

// pluginPath is the faults-plugin binary TestMain builds.
var pluginPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "faults-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pluginPath = filepath.Join(dir, "faults-plugin")
	out, err := exec.Command("go", "build", "-o", pluginPath, "github.com/stokerhq/stoker/faults-plugin").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build faults-plugin: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		return runWithLeakCheck(m)
	}()
	os.Exit(code)
}

func runWithLeakCheck(m *testing.M) int {
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutine leak:", err)
			return 1
		}
	}
	return code
}

func llm(prompt string) *plugins.RunRequest {
	return &plugins.RunRequest{JobID: "job-" + strings.Fields(prompt + " x")[0], Engine: faults.EngineID, Model: "faults-llm",
		Task: plugins.Task{Kind: plugins.KindLLM, LLM: &plugins.LLMTask{Messages: []plugins.Message{{Role: "user", Content: prompt}}}}}
}

func noEnv(string) string { return "" }

func TestParseFault(t *testing.T) {
	tests := []struct {
		prompt string
		want   faults.Fault
	}{
		{"segv", faults.Fault{Name: "segv"}},
		{"exit=3 nonce-17", faults.Fault{Name: "exit", Arg: "3"}},
		{"  sleep=20ms  ", faults.Fault{Name: "sleep", Arg: "20ms"}},
		{"", faults.Fault{}},
		{"hello world", faults.Fault{Name: "hello"}},
	}
	for _, tt := range tests {
		if got := faults.ParseFault(tt.prompt); got != tt.want {
			t.Errorf("ParseFault(%q) = %+v, want %+v", tt.prompt, got, tt.want)
		}
	}
}

func TestConformanceInProcess(t *testing.T) {
	e := plugintest.Connect(t, faults.New(nil, noEnv))
	plugintest.Conformance(t, e,
		plugintest.Case{Name: "ok llm", Req: *llm("ok 1"), Check: func(t *testing.T, r *plugintest.Recorder, err error) {
			if err != nil || !strings.Contains(string(r.JSON()), `"echo":"ok 1"`) {
				t.Errorf("got %s, %v; want an echo of the prompt", r.JSON(), err)
			}
		}},
		plugintest.Case{Name: "ok image", Req: plugins.RunRequest{JobID: "img", Engine: faults.EngineID, Task: plugins.Task{Kind: plugins.KindImage, Image: &plugins.ImageTask{Prompt: "ok"}}},
			Check: func(t *testing.T, r *plugintest.Recorder, err error) {
				ext, data := r.OutputBytes()
				if err != nil || ext != "png" || !strings.HasPrefix(string(data), "\x89PNG") {
					t.Errorf("got ext %q, %d bytes, %v; want a PNG", ext, len(data), err)
				}
			}},
		plugintest.Case{Name: "bad sleep", Req: *llm("sleep=forever"), Check: func(t *testing.T, r *plugintest.Recorder, err error) {
			if je := plugins.AsJobError(err); je == nil || je.Kind != plugins.ErrBadInput {
				t.Errorf("got %v, want %s", err, plugins.ErrBadInput)
			}
		}},
	)
	plugintest.ExpectCancel(t, e, llm("progress-hang"))
}

func TestDescribeLies(t *testing.T) {
	tests := []struct {
		lie   string
		check func(*plugins.Description) bool
	}{
		{"wrong-contract", func(d *plugins.Description) bool { return d.ContractVersion != plugins.ContractVersion }},
		{"bogus-kinds", func(d *plugins.Description) bool { return len(d.Kinds) == 1 && d.Kinds[0] == "teleport" }},
		{"no-engines", func(d *plugins.Description) bool { return len(d.Engines) == 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.lie, func(t *testing.T) {
			e := faults.New(nil, func(k string) string {
				if k == faults.EnvDescribe {
					return tt.lie
				}
				return ""
			})
			d, err := e.Describe(context.Background())
			if err != nil || !tt.check(d) {
				t.Errorf("Describe() = %+v, %v; want the %s lie", d, err, tt.lie)
			}
		})
	}
	t.Run("disarmed by missing file", func(t *testing.T) {
		e := faults.New(nil, func(k string) string {
			switch k {
			case faults.EnvDescribe:
				return "wrong-contract"
			case faults.EnvOnlyIfFile:
				return filepath.Join(t.TempDir(), "absent")
			}
			return ""
		})
		if d, err := e.Describe(context.Background()); err != nil || d.ContractVersion != plugins.ContractVersion {
			t.Errorf("Describe() = %+v, %v; want the truth", d, err)
		}
	})
}

func TestCrashes(t *testing.T) {
	tests := []struct {
		prompt string
		kind   plugins.ErrorKind
		signal string
		code   int
		words  string // in the report's message
	}{
		{"segv", plugins.ErrCrashed, "SIGSEGV", 2, "SIGSEGV"},
		{"segv-raw", plugins.ErrCrashed, "SIGSEGV", -1, "killed by SIGSEGV"},
		{"abort", plugins.ErrCrashed, "SIGABRT", 2, "SIGABRT"},
		{"panic", plugins.ErrCrashed, "", 2, "panic: faults: injected panic"},
		{"exit=7", plugins.ErrCrashed, "", 7, "exited with code 7"},
		{"exit=0", plugins.ErrCrashed, "", 0, "exited mid-job with code 0"},
		{"sigkill", plugins.ErrCrashed, "SIGKILL", -1, "killed by SIGKILL"},
		{"alloc", plugins.ErrOutOfMemory, "", 2, "out of memory"},
		{"break-transport", plugins.ErrCrashed, "SIGKILL", -1, "transport broke"},
	}
	for _, tt := range tests {
		t.Run(tt.prompt, func(t *testing.T) {
			je := plugintest.ExpectCrash(t, pluginPath, llm(tt.prompt))
			if je.Kind != tt.kind || je.Signal != tt.signal || je.ExitCode != tt.code {
				t.Errorf("got kind %s signal %q code %d, want %s %q %d (%v)", je.Kind, je.Signal, je.ExitCode, tt.kind, tt.signal, tt.code, je)
			}
			if !strings.Contains(je.Message, "faults-plugin") || !strings.Contains(je.Message, tt.words) {
				t.Errorf("message %q lacks the plugin name or %q", je.Message, tt.words)
			}
			if tt.prompt != "exit=0" && !strings.Contains(strings.Join(je.StderrTail, "\n")+je.Message, "faults: injecting") && !strings.Contains(je.Message, "panic") {
				t.Errorf("stderr tail %q lacks the injection line", je.StderrTail)
			}
		})
	}
}

func TestKernelOOM(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a memory cgroup; runs in CI as root")
	}
	cg := cgrouptest.Memory(t, "stoker-faults", 64<<20)
	je := plugintest.ExpectCrash(t, pluginPath, llm("oom-kernel"), faults.EnvCgroup+"="+cg)
	if je.Kind != plugins.ErrOutOfMemory || je.Signal != "SIGKILL" || !strings.Contains(je.Message, "OOM killer") {
		t.Errorf("got %s %q: %v; want the kernel's OOM kill", je.Kind, je.Signal, je)
	}
}

func TestStdoutGarbageMidJobIsHarmless(t *testing.T) {
	p := plugintest.Launch(t, pluginPath)
	rec, err := plugintest.Run(context.Background(), p, llm("stdout-garbage"))
	if err != nil || !strings.Contains(string(rec.JSON()), `"fault":"ok"`) {
		t.Fatalf("got %s, %v; want a normal answer", rec.JSON(), err)
	}
	if _, err := plugintest.Run(context.Background(), p, llm("ok")); err != nil {
		t.Errorf("the plugin stopped serving: %v", err)
	}
}

func TestCancelMidJob(t *testing.T) {
	p := plugintest.Launch(t, pluginPath)
	err := plugintest.ExpectCancel(t, p, llm("progress-hang"))
	if je := plugins.AsJobError(err); je == nil || je.Kind != plugins.ErrCancelled {
		t.Errorf("got %v, want %s", err, plugins.ErrCancelled)
	}
	if _, err := plugintest.Run(context.Background(), p, llm("ok")); err != nil {
		t.Errorf("the plugin stopped serving after a cancel: %v", err)
	}
}

func TestStartFailures(t *testing.T) {
	tests := []struct {
		name string
		env  []string
	}{
		{"slow start", []string{faults.EnvStart + "=slow=30s"}},
		{"garbage before handshake", []string{faults.EnvStart + "=garbage"}},
		{"exit before serving", []string{faults.EnvStart + "=exit"}},
		{"describe hangs", []string{faults.EnvDescribe + "=hang"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := plugintest.ExpectStartFailure(t, pluginPath, 500*time.Millisecond, tt.env...)
			if err == nil || errors.Is(err, context.Canceled) {
				t.Errorf("got %v, want a start failure", err)
			}
		})
	}
}
