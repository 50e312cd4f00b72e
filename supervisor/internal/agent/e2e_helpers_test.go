package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/stokerhq/stoker/internal/syncbuf"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"

	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/supervisor/internal/agent"
	"github.com/stokerhq/stoker/supervisor/internal/config"
	"github.com/stokerhq/stoker/supervisor/internal/devstudio"
	"github.com/stokerhq/stoker/supervisor/internal/protocol"
	"github.com/stokerhq/stoker/synthetic-plugin/synthetic"
)

// e2ePluginName is the name under which the test binary, linked into a
// plugin dir, serves e2eEngine (go-plugin's helperProcess pattern): a
// plugin for outputs and failures the synthetic plugin must not fake.
const e2ePluginName = "e2e-plugin"

// binDir holds the real plugin binaries built once for the whole run.
var binDir string

func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == e2ePluginName {
		plugins.Serve(e2eEngine{})
		return
	}
	if addr := os.Getenv(echoEnv); addr != "" {
		os.Exit(echo(addr))
	}
	dir, err := os.MkdirTemp("", "stoker-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	build := exec.Command("go", "build", "-o", dir+"/", "github.com/stokerhq/stoker/synthetic-plugin")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the synthetic plugin:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutine leak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// e2eEngine serves engine id "e2e": an image job returns width×height
// bytes of synthetic.Blob (any size, streamed); an llm job fails with an
// engine error when asked, else answers.
type e2eEngine struct{}

func (e2eEngine) Describe(context.Context) (*plugins.Description, error) {
	return &plugins.Description{
		Name: "e2e", Version: "1", ContractVersion: plugins.ContractVersion,
		Engines: []string{"e2e"}, Kinds: []plugins.TaskKind{plugins.KindImage, plugins.KindLLM},
		Models: map[plugins.TaskKind][]string{plugins.KindImage: {"e2e-blob"}, plugins.KindLLM: {"e2e-llm"}},
		Ready:  true,
	}, nil
}

func (e2eEngine) Run(ctx context.Context, req *plugins.RunRequest, ev plugins.Events) error {
	switch req.Task.Kind {
	case plugins.KindImage:
		if req.Task.Prompt() == "engine-error" {
			return plugins.Errorf(plugins.ErrEngine, "the e2e engine refuses: model weights unreadable")
		}
		n := int64(req.Task.Image.Width) * int64(req.Task.Image.Height)
		return synthetic.Blob(req.Task.Image.Prompt, n, outputWriter{ev})
	case plugins.KindLLM:
		n := e2eInFlight.Add(1)
		defer e2eInFlight.Add(-1)
		for m := e2eMaxInFlight.Load(); n > m && !e2eMaxInFlight.CompareAndSwap(m, n); m = e2eMaxInFlight.Load() {
		}
		prompt := req.Task.Prompt()
		if prompt == "engine-error" {
			return plugins.Errorf(plugins.ErrEngine, "the e2e engine refuses: model weights unreadable")
		}
		if dir, ok := strings.CutPrefix(prompt, "gate:"); ok {
			if err := waitGate(ctx, dir, req.JobID); err != nil {
				return err
			}
		}
		// The engine's own count of jobs at once, in this plugin process.
		return ev.Result(fmt.Appendf(nil, `{"object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"max_in_flight":%d}`, e2eMaxInFlight.Load()))
	}
	return plugins.Errorf(plugins.ErrUnsupported, "cannot serve %s", req.Task.Kind)
}

// e2eInFlight counts the e2e engine's llm runs in flight in this plugin
// process, and e2eMaxInFlight the most at once: the engine's own witness
// that the node's one job slot holds.
var e2eInFlight, e2eMaxInFlight atomic.Int32

// waitGate holds a gated llm job: it marks the job running (a file
// running-<job> in dir, which the test waits for) and returns once the
// test creates dir/release. It polls: the plugin is another process, and
// files are what both sides share.
func waitGate(ctx context.Context, dir, jobID string) error {
	if err := os.WriteFile(filepath.Join(dir, "running-"+jobID), nil, 0o600); err != nil {
		return err
	}
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		if _, err := os.Stat(filepath.Join(dir, "release")); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return plugins.Errorf(plugins.ErrCancelled, "gate: %v", ctx.Err())
		case <-t.C:
		}
	}
}

type outputWriter struct{ ev plugins.Events }

func (w outputWriter) Write(p []byte) (int, error) {
	if err := w.ev.Output("bin", p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// stack is a dev studio and an agent running against it in this process,
// with real plugin processes.
type stack struct {
	studio *devstudio.Server
	agent  *agent.Agent
	files  string // the dev studio's FilesDir, served at /dev/files/
	state  string // the agent's state dir
	// stop drains and stops the agent (its first signal) and returns
	// Run's error; the test's cleanup calls it too.
	stop func() error
}

type stackOptions struct {
	maxAttempts int
	catalog     func(*devstudio.Server, *devstudio.Catalog)
	logOutput   io.Writer
	hooks       devstudio.Hooks
	listen      string   // the local API's address; "" turns it off
	env         []string // more STOKER_ variables, after the stack's own
}

// startStack starts the dev studio on 127.0.0.1:0 and the agent with the
// synthetic plugin and the e2e plugin; both stop when the test ends.
func startStack(tb testing.TB, o stackOptions) *stack {
	tb.Helper()
	srv, files, log := startDevStudio(tb, o)
	a, state, stop := runAgent(tb, srv.URL(), log, append([]string{"STOKER_LISTEN=" + o.listen}, o.env...)...)
	return &stack{studio: srv, agent: a, files: files, state: state, stop: stop}
}

// startDevStudio starts the dev studio of a stack on 127.0.0.1:0 until the
// test ends; it returns the studio, its FilesDir and the logger the stack
// shares.
func startDevStudio(tb testing.TB, o stackOptions) (*devstudio.Server, string, hclog.InterceptLogger) {
	tb.Helper()
	if o.logOutput == nil {
		o.logOutput = io.Discard
	}
	log := hclog.NewInterceptLogger(&hclog.LoggerOptions{Name: "stoker", Level: hclog.Info, Output: o.logOutput})
	cat := devstudio.DefaultCatalog()
	files := tb.TempDir()
	srv, err := devstudio.New(devstudio.Config{
		Addr: "127.0.0.1:0", AutoApprove: true, Catalog: cat, MaxAttempts: o.maxAttempts,
		FilesDir: files, ResultsDir: tb.TempDir(), Logger: log, Hooks: o.hooks,
	})
	if err != nil {
		tb.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { srv.Close() })
	if o.catalog != nil {
		o.catalog(srv, cat)
	}
	return srv, files, log
}

// runAgent runs the agent in-process against the studio at studioURL with
// the synthetic plugin and the e2e plugin, until the test ends. env adds
// STOKER_ variables. It returns once the agent runs, with its state dir.
func runAgent(tb testing.TB, studioURL string, log hclog.InterceptLogger, env ...string) (*agent.Agent, string, func() error) {
	tb.Helper()
	pluginDir := tb.TempDir()
	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	for _, link := range []struct{ target, name string }{
		{filepath.Join(binDir, "synthetic-plugin"), "synthetic-plugin"},
		{exe, e2ePluginName},
	} {
		linkPlugin(tb, link.target, filepath.Join(pluginDir, link.name))
	}
	return runAgentWith(tb, studioURL, pluginDir, log, env...)
}

// runAgentWith is runAgent with the plugins in pluginDir. Downloads may
// reach loopback, where the dev studio serves the dev models and inputs;
// an env entry STOKER_FETCH_ALLOW= takes that away.
func runAgentWith(tb testing.TB, studioURL, pluginDir string, log hclog.InterceptLogger, env ...string) (*agent.Agent, string, func() error) {
	tb.Helper()
	state := tb.TempDir()
	cfg, err := config.Load("", append([]string{
		"STOKER_API_BASE_URL=" + studioURL,
		"STOKER_STATE_DIR=" + state,
		"STOKER_PLUGIN_DIR=" + pluginDir,
		"STOKER_FETCH_ALLOW=127.0.0.0/8,::1",
	}, env...))
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *agent.Agent, 1)
	done := make(chan error, 1)
	go func() {
		done <- agent.Run(ctx, cfg, agent.Options{Logger: log, RegistrationPoll: 20 * time.Millisecond, Environ: os.Environ(), Ready: func(a *agent.Agent) { ready <- a }})
	}()
	// stop is the agent's first signal (its drain) and waits for Run.
	stop := sync.OnceValue(func() error {
		cancel()
		return <-done
	})
	tb.Cleanup(func() {
		if err := stop(); err != nil {
			tb.Errorf("agent.Run: %v", err)
		}
	})
	select {
	case a := <-ready:
		return a, state, stop
	case err := <-done:
		tb.Fatalf("agent.Run returned early: %v", err)
	}
	return nil, "", nil
}

// submit queues a job and waits until it is completed or failed for good.
func (s *stack) submit(tb testing.TB, model string, task any) devstudio.JobView {
	tb.Helper()
	raw, err := json.Marshal(task)
	if err != nil {
		tb.Fatal(err)
	}
	id, err := s.studio.Submit(model, raw)
	if err != nil {
		tb.Fatalf("submit %s: %v", model, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	v, err := s.studio.WaitJob(ctx, id, func(v devstudio.JobView) bool { return v.Status.Done() })
	if err != nil {
		tb.Fatalf("job %s (%s): %v; last view %+v", id, model, err, v)
	}
	return v
}

// result fetches a binary result through the dev studio's HTTP API.
func (s *stack) result(tb testing.TB, v devstudio.JobView) []byte {
	tb.Helper()
	if v.ResultURL == "" {
		tb.Fatalf("job %s has no binary result: %+v", v.ID, v)
	}
	resp, err := httpGet(v.ResultURL)
	if err != nil {
		tb.Fatal(err)
	}
	return resp
}

// addEntry adds a catalog model served by engine.
func addEntry(tb testing.TB, cat *devstudio.Catalog, id, engine string) {
	tb.Helper()
	err := cat.Add(id, devstudio.CatalogEntry{Source: protocol.ModelSource{
		Engine: engine, CliDefaults: &protocol.ModelCliDefaults{CfgScale: 1, Steps: 1, Width: 1, Height: 1},
	}})
	if err != nil {
		tb.Fatal(err)
	}
}

func httpGet(url string) ([]byte, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return io.ReadAll(resp.Body)
}

// linkPlugin puts the plugin binary target into a plugin dir as dst: a hard
// link (a copy across file systems). Not a symbolic link: the agent
// refuses those, a link being one more path another user might change.
func linkPlugin(tb testing.TB, target, dst string) {
	tb.Helper()
	if err := os.Link(target, dst); err == nil {
		return
	}
	b, err := os.ReadFile(target)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		tb.Fatal(err)
	}
}

// syncBuffer is a concurrency-safe log sink.
type syncBuffer = syncbuf.Buffer
