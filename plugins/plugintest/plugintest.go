// Package plugintest is the conformance kit for stoker engine plugins. A
// plugin author runs it in the plugin's own tests:
//
//	func TestConformance(t *testing.T) {
//		plugintest.Conformance(t, plugintest.Connect(t, myengine.New(...)), plugintest.Case{
//			Name: "hello", Req: plugins.RunRequest{...},
//			Check: func(t *testing.T, r *plugintest.Recorder, err error) { ... },
//		})
//	}
//
// [Connect] serves an Engine over real gRPC through go-plugin's in-process
// test connection, so the conversions and the host's checks of what a plugin
// sends are exercised exactly as in production; [Launch] starts a built
// plugin binary the way the supervisor does.
//
// [Check] is the one definition of "conforms": Conformance renders its
// report as subtests, and [CheckPlugin] (which `stoker plugin check` runs)
// adds the checks only a process can fail: the handshake, stdout after it,
// staying alive.
//
// Crashes and hangs need a real process: [ExpectCrash] runs a job that
// should kill the built plugin and checks the supervisor gets a retryable
// crash report with the exit status and stderr; [ExpectCancel] checks a job
// stops promptly when cancelled mid-run; [ExpectStartFailure] checks a
// plugin that cannot start fails within the start-up bound and leaves no
// process behind.
package plugintest

import (
	"bytes"
	"context"
	"os"
	"sync"
	"testing"
	"time"

	plugin "github.com/hashicorp/go-plugin"

	"github.com/stokerhq/stoker/plugins"
)

// Connect serves e over real in-process gRPC and returns the host's view of
// it. The connection is closed when the test ends.
func Connect(t testing.TB, e plugins.Engine) plugins.Engine {
	t.Helper()
	client, server := plugin.TestPluginGRPCConn(t, false, plugins.PluginMap(e))
	t.Cleanup(func() {
		_ = client.Close()
		server.Stop()
	})
	raw, err := client.Dispense(plugins.PluginName)
	if err != nil {
		t.Fatalf("dispense: %v", err)
	}
	eng, ok := raw.(plugins.Engine)
	if !ok {
		t.Fatalf("dispensed %T, want a plugins.Engine", raw)
	}
	return eng
}

// Launch starts the plugin binary at path as the supervisor does and kills
// it when the test ends. The plugin's environment is the allow-listed part
// of the test's (plugins.Env) plus env.
func Launch(t testing.TB, path string, env ...string) *plugins.Plugin {
	t.Helper()
	p, err := plugins.Launch(plugins.LaunchConfig{Path: path, Env: hostEnv(env)})
	if err != nil {
		t.Fatalf("launch %s: %v", path, err)
	}
	t.Cleanup(p.Kill)
	return p
}

// hostEnv is what the supervisor would pass a plugin from this test's
// environment, plus env.
func hostEnv(env []string) []string {
	return append(plugins.Env(os.Environ(), nil), env...)
}

// Recorder is a [plugins.Events] that keeps everything a run reports.
// Its methods may be called concurrently.
type Recorder struct {
	mu       sync.Mutex // guards all below
	progress []Progress
	logs     []string
	ext      string
	output   bytes.Buffer
	result   []byte
	texts    []string
}

// Progress is one recorded progress event.
type Progress struct {
	Step, Total uint64
	Unit        string
}

var (
	_ plugins.Events       = (*Recorder)(nil)
	_ plugins.TextStreamer = (*Recorder)(nil)
)

// Text records a streamed piece of an llm answer (run the request with
// StreamText set to have an engine send them).
func (r *Recorder) Text(piece string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.texts = append(r.texts, piece)
	return nil
}

// Texts returns the streamed pieces of an llm answer, in order.
func (r *Recorder) Texts() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.texts...)
}

func (r *Recorder) Progress(step, total uint64, unit string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.progress = append(r.progress, Progress{step, total, unit})
	return nil
}

func (r *Recorder) Log(level, message string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.logs = append(r.logs, level+": "+message)
	return nil
}

func (r *Recorder) Output(ext string, p []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ext = ext
	r.output.Write(p)
	return nil
}

func (r *Recorder) Result(json []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.result = append([]byte(nil), json...)
	return nil
}

// Events returns the recorded progress events.
func (r *Recorder) Events() []Progress {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Progress(nil), r.progress...)
}

// Logs returns the recorded log lines as "level: message".
func (r *Recorder) Logs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.logs...)
}

// Output returns the binary output and its extension.
func (r *Recorder) OutputBytes() (ext string, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ext, append([]byte(nil), r.output.Bytes()...)
}

// JSON returns the JSON result, or nil.
func (r *Recorder) JSON() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.result
}

// Run runs req on e with a fresh Recorder and returns both outcomes.
func Run(ctx context.Context, e plugins.Engine, req *plugins.RunRequest) (*Recorder, error) {
	rec := &Recorder{}
	err := e.Run(ctx, req, rec)
	return rec, err
}

// Case is one job an author expects the engine to handle.
type Case struct {
	Name string
	Req  plugins.RunRequest
	// Check inspects the outcome. It runs with the Run error, which it
	// should check too.
	Check func(t *testing.T, r *Recorder, err error)
}

// CancelBound is how long Conformance lets a cancelled run take to return
// before it reports the engine as ignoring cancellation.
var CancelBound = 10 * time.Second

// Conformance checks the engine contract on e, one subtest per check of
// [Check] (the same checks `stoker plugin check` runs on an executable),
// then runs every case, which must pass its own Check.
func Conformance(t *testing.T, e plugins.Engine, cases ...Case) {
	t.Helper()
	ctx := context.Background()
	for _, r := range Check(ctx, e, Options{}).Results {
		t.Run(r.Name, func(t *testing.T) {
			if !r.Pass {
				t.Error(r.Detail)
				return
			}
			t.Log(r.Detail)
		})
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			req := c.Req
			rec, err := Run(ctx, e, &req)
			c.Check(t, rec, err)
		})
	}
}

func known(k plugins.TaskKind) bool {
	for _, a := range plugins.AllKinds {
		if a == k {
			return true
		}
	}
	return false
}

func unservedKind(d *plugins.Description) (plugins.TaskKind, bool) {
	served := map[plugins.TaskKind]bool{}
	for _, k := range d.Kinds {
		served[k] = true
	}
	for _, k := range plugins.AllKinds {
		if !served[k] {
			return k, true
		}
	}
	return "", false
}

// requestFor builds a minimal request of kind for one of d's engines.
func requestFor(kind plugins.TaskKind, d *plugins.Description) *plugins.RunRequest {
	req := &plugins.RunRequest{JobID: "conformance", Model: "conformance", Task: plugins.Task{Kind: kind}}
	if len(d.Engines) > 0 {
		req.Engine = d.Engines[0]
	}
	switch kind {
	case plugins.KindImage:
		req.Task.Image = &plugins.ImageTask{Prompt: "conformance", Width: 64, Height: 64, Steps: 1, Ext: "png"}
	case plugins.KindLLM:
		req.Task.LLM = &plugins.LLMTask{Messages: []plugins.Message{{Role: "user", Content: "hi"}}, MaxTokens: 4}
	case plugins.KindSTT:
		req.Task.STT = &plugins.STTTask{InputURL: "file:///conformance.wav"}
	case plugins.KindTTS:
		req.Task.TTS = &plugins.TTSTask{Text: "conformance", Voice: "default", Ext: "wav"}
	case plugins.KindVideo:
		req.Task.Video = &plugins.VideoTask{Prompt: "conformance", Seconds: 1, Width: 64, Height: 64, Ext: "gif"}
	}
	return req
}
