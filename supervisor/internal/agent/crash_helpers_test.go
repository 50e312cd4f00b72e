package agent_test

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/stokerhq/stoker/supervisor/internal/agent"
	"github.com/stokerhq/stoker/supervisor/internal/config"
	"github.com/stokerhq/stoker/supervisor/internal/devstudio"
	"github.com/stokerhq/stoker/supervisor/internal/engines"
)

// Built once per test binary, into the lead's binDir (removed by TestMain).
var (
	buildOnce sync.Once
	buildErr  error
)

// crashBinaries builds faults-plugin and stoker into binDir.
func crashBinaries(tb testing.TB) {
	tb.Helper()
	buildOnce.Do(func() {
		out, err := exec.Command("go", "build", "-o", binDir+"/",
			"github.com/stokerhq/stoker/faults-plugin",
			"github.com/stokerhq/stoker/supervisor/cmd/stoker").CombinedOutput()
		if err != nil {
			buildErr = &buildError{err: err, out: string(out)}
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string {
	return "build faults-plugin and stoker: " + e.err.Error() + "\n" + e.out
}

// frameLog records when the studio received each frame, per job.
type frameLog struct {
	mu  sync.Mutex
	got map[string][]frameAt // job id → frames in arrival order
}

type frameAt struct {
	Point devstudio.Point
	At    time.Time
}

func (f *frameLog) hook(_ string, p devstudio.Point, jobID string) bool {
	if jobID == "" {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.got == nil {
		f.got = map[string][]frameAt{}
	}
	f.got[jobID] = append(f.got[jobID], frameAt{p, time.Now()})
	return false
}

// all returns the frames the studio received for job, in order.
func (f *frameLog) all(job string) []frameAt {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]frameAt(nil), f.got[job]...)
}

// first returns when the studio first received a p frame for job.
func (f *frameLog) first(job string, p devstudio.Point) (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, fr := range f.got[job] {
		if fr.Point == p {
			return fr.At, true
		}
	}
	return time.Time{}, false
}

// crashStack is a dev studio plus an in-process agent running the faults
// and synthetic plugins.
type crashStack struct {
	studio   *devstudio.Server
	agent    *agent.Agent
	frames   *frameLog
	cancel   context.CancelFunc
	done     chan error
	stateDir string
}

type crashOptions struct {
	maxAttempts int      // (1: the first retryable failure is final, so the test sees it)
	env         []string // STOKER_ config variables on top of the defaults below
	heartbeat   time.Duration
	pluginDir   string // instead of a fresh dir with both plugins
	stateDir    string // instead of a fresh one
	logOutput   io.Writer
	// deviceRefresh is agent.Options.DeviceRefresh (0: the default).
	deviceRefresh time.Duration
}

// startCrashStack starts the stack; it stops (and is checked for leftover
// plugin processes) when the test ends.
func startCrashStack(tb testing.TB, o crashOptions) *crashStack {
	tb.Helper()
	crashBinaries(tb)
	if o.maxAttempts == 0 {
		o.maxAttempts = 1
	}
	if o.logOutput == nil {
		o.logOutput = io.Discard
	}
	log := hclog.NewInterceptLogger(&hclog.LoggerOptions{Name: "stoker", Level: hclog.Info, Output: o.logOutput})
	cat := devstudio.DefaultCatalog()
	addEntry(tb, cat, "faults-llm", "faults")
	addEntry(tb, cat, "faults-image", "faults")
	frames := &frameLog{}
	srv, err := devstudio.New(devstudio.Config{
		Addr: "127.0.0.1:0", AutoApprove: true, Catalog: cat, MaxAttempts: o.maxAttempts,
		ResultsDir: tb.TempDir(), Logger: log, Hooks: devstudio.Hooks{Drop: frames.hook},
	})
	if err != nil {
		tb.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { srv.Close() })
	if o.pluginDir == "" {
		o.pluginDir = crashPluginDir(tb)
	}
	stateDir := o.stateDir
	if stateDir == "" {
		stateDir = tb.TempDir()
	}
	env := append([]string{
		"STOKER_API_BASE_URL=" + srv.URL(),
		"STOKER_STATE_DIR=" + stateDir,
		"STOKER_LISTEN=",
		"STOKER_PLUGIN_DIR=" + o.pluginDir,
		"STOKER_PLUGIN_CRASH_LIMIT=1000",
		"STOKER_STALL_TIMEOUTS=faults=3s",
		"STOKER_DRAIN_TIMEOUT=5s",
		// The faults plugin's start-up faults are set with tb.Setenv.
		"STOKER_PLUGIN_ENV=STOKER_FAULTS_*",
	}, o.env...)
	cfg, err := config.Load("", env)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *agent.Agent, 1)
	done := make(chan error, 1)
	hb := o.heartbeat
	if hb == 0 {
		hb = 50 * time.Millisecond
	}
	go func() {
		done <- agent.Run(ctx, cfg, agent.Options{Logger: log, RegistrationPoll: 20 * time.Millisecond, HeartbeatInterval: hb, Environ: os.Environ(), DeviceRefresh: o.deviceRefresh,
			Ready: func(a *agent.Agent) { ready <- a }})
	}()
	s := &crashStack{studio: srv, frames: frames, cancel: cancel, done: done, stateDir: stateDir}
	tb.Cleanup(func() {
		s.stop(tb)
		expectNoChildren(tb)
	})
	select {
	case s.agent = <-ready:
	case err := <-done:
		tb.Fatalf("agent.Run returned early: %v", err)
	}
	// Welcomed, with capabilities, before the test submits anything.
	wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer wcancel()
	if _, err := srv.WaitWorker(wctx, s.workerID(tb, wctx), func(v devstudio.WorkerView) bool { return v.Connected && v.Capabilities != nil }); err != nil {
		tb.Fatalf("worker never connected: %v", err)
	}
	return s
}

func (s *crashStack) workerID(tb testing.TB, ctx context.Context) string {
	tb.Helper()
	for {
		if ws := s.studio.Workers(); len(ws) > 0 {
			return ws[0].ID
		}
		select {
		case <-s.studio.Changed():
		case <-ctx.Done():
			tb.Fatalf("no worker registered")
		}
	}
}

// stop cancels the agent (a drain) and waits for Run; it may be called
// more than once.
func (s *crashStack) stop(tb testing.TB) {
	tb.Helper()
	s.cancel()
	if s.done == nil {
		return
	}
	if err := <-s.done; err != nil {
		tb.Errorf("agent.Run: %v", err)
	}
	s.done = nil
}

// crashPluginDir is a fresh plugin dir holding faults-plugin and
// synthetic-plugin (hard links to the built binaries).
func crashPluginDir(tb testing.TB) string {
	tb.Helper()
	dir := tb.TempDir()
	for _, name := range []string{"faults-plugin", "synthetic-plugin"} {
		linkPlugin(tb, filepath.Join(binDir, name), filepath.Join(dir, name))
	}
	return dir
}

func crashLLMTask(prompt string) map[string]any {
	return map[string]any{"kind": "llm", "messages": []map[string]string{{"role": "user", "content": prompt}}}
}

// run submits a job and waits until the studio has its final outcome.
func (s *crashStack) run(tb testing.TB, model, prompt string) devstudio.JobView {
	tb.Helper()
	raw, err := json.Marshal(crashLLMTask(prompt))
	if err != nil {
		tb.Fatal(err)
	}
	id, err := s.studio.Submit(model, raw)
	if err != nil {
		tb.Fatalf("submit %s: %v", model, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	v, err := s.studio.WaitJob(ctx, id, func(v devstudio.JobView) bool { return v.Status.Done() })
	if err != nil {
		tb.Fatalf("job %s (%s %q): %v; last view %+v", id, model, prompt, err, v)
	}
	return v
}

// faultsStatus is the faults plugin's status.
func (s *crashStack) faultsStatus(tb testing.TB) engines.PluginStatus {
	tb.Helper()
	for _, st := range s.agent.Engines().Status() {
		if st.Name == "faults-plugin" {
			return st
		}
	}
	tb.Fatalf("no faults-plugin among %+v", s.agent.Engines().Status())
	return engines.PluginStatus{}
}

// waitFaults waits until the faults plugin's status satisfies cond.
func (s *crashStack) waitFaults(tb testing.TB, what string, cond func(engines.PluginStatus) bool) engines.PluginStatus {
	tb.Helper()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for {
		if st := s.faultsStatus(tb); cond(st) {
			return st
		}
		select {
		case <-s.agent.Engines().Changed():
		case <-deadline.C:
			tb.Fatalf("faults plugin never %s: %+v", what, s.faultsStatus(tb))
		}
	}
}

// expectNoChildren fails the test if a process whose parent is this test
// process is still alive (a plugin outliving its test).
func expectNoChildren(tb testing.TB) {
	tb.Helper()
	self := strconv.Itoa(os.Getpid())
	entries, err := os.ReadDir("/proc")
	if err != nil {
		tb.Errorf("read /proc: %v", err)
		return
	}
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		st := string(b)
		i := strings.LastIndexByte(st, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(st[i+1:])
		if len(f) > 1 && f[1] == self && f[0] != "Z" {
			tb.Errorf("process %s (%s) outlived its test", e.Name(), st[:i+1])
		}
	}
}

// alive reports whether pid runs (and is not a zombie).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	st := string(b)
	i := strings.LastIndexByte(st, ')')
	return i >= 0 && i+2 < len(st) && st[i+2] != 'Z'
}
