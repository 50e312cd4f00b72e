package agent_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/stokerhq/stoker/supervisor/internal/agent"
	"github.com/stokerhq/stoker/supervisor/internal/config"
	"github.com/stokerhq/stoker/supervisor/internal/devstudio"
	"github.com/stokerhq/stoker/supervisor/internal/engines"
	"github.com/stokerhq/stoker/supervisor/internal/reaper"
)

// submitAsync queues a job and returns its id at once.
func submitAsync(tb testing.TB, srv *devstudio.Server, model, prompt string) string {
	tb.Helper()
	raw, err := json.Marshal(crashLLMTask(prompt))
	if err != nil {
		tb.Fatal(err)
	}
	id, err := srv.Submit(model, raw)
	if err != nil {
		tb.Fatal(err)
	}
	return id
}

func waitJob(tb testing.TB, srv *devstudio.Server, id string, what string, cond func(devstudio.JobView) bool) devstudio.JobView {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	v, err := srv.WaitJob(ctx, id, cond)
	if err != nil {
		tb.Fatalf("job %s never %s: %v (last %+v)", id, what, err, v)
	}
	return v
}

func running(v devstudio.JobView) bool { return v.Status == devstudio.JobRunning }
func done(v devstudio.JobView) bool    { return v.Status.Done() }

func TestDrainPausesAndLetsTheJobFinish(t *testing.T) {
	s := startCrashStack(t, crashOptions{})
	id := submitAsync(t, s.studio, "faults-llm", "sleep=1500ms")
	waitJob(t, s.studio, id, "ran", running)
	s.cancel() // the first signal
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.studio.WaitWorker(ctx, s.workerID(t, ctx), func(w devstudio.WorkerView) bool {
		return w.Capabilities != nil && !w.Capabilities.AutoEnabled
	}); err != nil {
		t.Fatalf("heartbeats never said autoEnabled:false during the drain: %v", err)
	}
	if v := waitJob(t, s.studio, id, "finished", done); v.Status != devstudio.JobCompleted {
		t.Errorf("the running job ended %s %q during the drain, want completed", v.Status, v.Error)
	}
	s.stop(t)
}

func TestDrainTimeoutFailsTheJobRetryable(t *testing.T) {
	s := startCrashStack(t, crashOptions{env: []string{"STOKER_DRAIN_TIMEOUT=300ms"}})
	id := submitAsync(t, s.studio, "faults-llm", "progress-hang")
	waitJob(t, s.studio, id, "ran", running)
	s.cancel()
	v := waitJob(t, s.studio, id, "finished", done)
	if v.Status != devstudio.JobFailed || !v.Retryable || !strings.Contains(v.Error, "drain timeout 300ms") {
		t.Errorf("studio has %s retryable=%v %q, want a retryable failure naming the drain timeout", v.Status, v.Retryable, v.Error)
	}
	s.stop(t)
}

// stokerProcess runs the built stoker binary as an agent against srv.
type stokerProcess struct {
	cmd      *exec.Cmd
	stateDir string
	lines    chan string // its stderr, line by line
	exited   chan struct{}
	waitErr  error
}

func startStoker(t *testing.T, srv *devstudio.Server, env ...string) *stokerProcess {
	t.Helper()
	return startStokerArgs(t, srv, nil, env...)
}

// startStokerArgs is startStoker with extra `stoker agent` arguments.
func startStokerArgs(t *testing.T, srv *devstudio.Server, args []string, env ...string) *stokerProcess {
	t.Helper()
	crashBinaries(t)
	p := &stokerProcess{stateDir: t.TempDir(), lines: make(chan string, 1024), exited: make(chan struct{})}
	workerID, token, err := srv.AddWorker("")
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(filepath.Join(binDir, "stoker"), append([]string{"agent"}, args...)...)
	p.cmd.Env = append(os.Environ(),
		"STOKER_WORKER_ID="+workerID,
		"STOKER_AUTH_TOKEN="+token,
		"STOKER_API_BASE_URL="+srv.URL(),
		"STOKER_STATE_DIR="+p.stateDir,
		"STOKER_LISTEN=",
		"STOKER_PLUGIN_DIR="+crashPluginDir(t),
		"STOKER_LISTEN=",
	)
	p.cmd.Env = append(p.cmd.Env, env...)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			select {
			case p.lines <- sc.Text():
			default: // nobody is looking for lines now
			}
		}
	}()
	go func() {
		<-scanned
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
	})
	return p
}

// waitLine waits for a stderr line containing s.
func (p *stokerProcess) waitLine(t *testing.T, s string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case l := <-p.lines:
			if strings.Contains(l, s) {
				return
			}
		case <-p.exited:
			t.Fatalf("stoker exited (%v) before logging %q", p.waitErr, s)
		case <-deadline:
			t.Fatalf("stoker never logged %q", s)
		}
	}
}

// pluginPids are the plugin processes the agent recorded for its reaper.
func (p *stokerProcess) pluginPids(t *testing.T) []int {
	t.Helper()
	// Two plugins, each serving with a warm spare beside it: four
	// processes once the spares, started in the background, are up. A pid
	// record is a file: only polling will do.
	deadline := time.Now().Add(30 * time.Second)
	for {
		entries, err := os.ReadDir(filepath.Join(p.stateDir, "plugin-pids"))
		if err != nil {
			t.Fatal(err)
		}
		var pids []int
		for _, e := range entries {
			if n, err := strconv.Atoi(e.Name()); err == nil {
				pids = append(pids, n)
			}
		}
		if len(pids) == 4 {
			return pids
		}
		if len(pids) > 4 || time.Now().After(deadline) {
			t.Fatalf("recorded plugin pids %v, want the two plugins' and their spares'", pids)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (p *stokerProcess) exitCode(t *testing.T) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(time.Minute):
		t.Fatalf("stoker did not exit")
	}
	var ee *exec.ExitError
	if errors.As(p.waitErr, &ee) {
		return ee.ExitCode()
	}
	if p.waitErr != nil {
		t.Fatalf("wait: %v", p.waitErr)
	}
	return 0
}

// expectDead waits for pids to be gone. They are not our children, so no
// event tells us: poll /proc against a deadline.
func expectDead(t *testing.T, pids []int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Errorf("plugin %d outlived stoker", pid)
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

func newDrainStudio(t *testing.T) *devstudio.Server {
	t.Helper()
	cat := devstudio.DefaultCatalog()
	addEntry(t, cat, "faults-llm", "faults")
	srv, err := devstudio.New(devstudio.Config{Addr: "127.0.0.1:0", AutoApprove: true, Catalog: cat, MaxAttempts: 1,
		ResultsDir: t.TempDir(), Logger: hclog.NewNullLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

func TestSIGTERMDrainsARealProcess(t *testing.T) {
	tests := []struct {
		name, drain, prompt string
		status              devstudio.JobStatus
		words               string
	}{
		{"job finishes in time", "30s", "sleep=1500ms", devstudio.JobCompleted, ""},
		{"drain timeout", "400ms", "progress-hang", devstudio.JobFailed, "drain timeout 400ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newDrainStudio(t)
			p := startStoker(t, srv, "STOKER_DRAIN_TIMEOUT="+tt.drain)
			p.waitLine(t, "agent running")
			id := submitAsync(t, srv, "faults-llm", tt.prompt)
			waitJob(t, srv, id, "ran", running)
			pids := p.pluginPids(t)
			if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			v := waitJob(t, srv, id, "finished", done)
			if v.Status != tt.status || v.Status == devstudio.JobFailed && !v.Retryable || !strings.Contains(v.Error, tt.words) {
				t.Errorf("studio has %s retryable=%v %q, want %s with %q", v.Status, v.Retryable, v.Error, tt.status, tt.words)
			}
			if code := p.exitCode(t); code != 0 {
				t.Errorf("stoker exited with %d after a drain, want 0", code)
			}
			expectDead(t, pids)
			if left, _ := os.ReadDir(filepath.Join(p.stateDir, "plugin-pids")); len(left) != 0 {
				t.Errorf("pid records left after a clean stop: %v", left)
			}
		})
	}
}

func TestSecondSignalStopsAtOnce(t *testing.T) {
	srv := newDrainStudio(t)
	p := startStoker(t, srv, "STOKER_DRAIN_TIMEOUT=10m")
	p.waitLine(t, "agent running")
	id := submitAsync(t, srv, "faults-llm", "progress-hang")
	waitJob(t, srv, id, "ran", running)
	pids := p.pluginPids(t)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.waitLine(t, "draining")
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.exitCode(t); code != 2 {
		t.Errorf("stoker exited with %d after a second signal, want 2", code)
	}
	// The parent-death signal takes the plugins with it.
	expectDead(t, pids)
	// The studio learns of the job through the closed socket.
	if v := waitJob(t, srv, id, "released", done); v.Status != devstudio.JobFailed {
		t.Errorf("studio has %s, want the job failed after its worker vanished", v.Status)
	}
}

func TestHardStopTakesThePluginsAlong(t *testing.T) {
	srv := newDrainStudio(t)
	p := startStoker(t, srv, "STOKER_DRAIN_TIMEOUT=10m")
	p.waitLine(t, "agent running")
	id := submitAsync(t, srv, "faults-llm", "progress-hang")
	waitJob(t, srv, id, "ran", running)
	pids := p.pluginPids(t)
	// What a second signal's os.Exit, the OOM killer or a crash of the
	// supervisor itself leaves: no chance to clean up.
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.exitCode(t)
	expectDead(t, pids) // the parent-death signal
	if v := waitJob(t, srv, id, "released", done); v.Status != devstudio.JobFailed {
		t.Errorf("studio has %s, want the job failed after its worker vanished", v.Status)
	}
}

func TestReaperKillsLeftoversAtStart(t *testing.T) {
	stateDir := t.TempDir()
	leftover := exec.Command("sleep", "300")
	leftover.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := leftover.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = leftover.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-leftover.Process.Pid, syscall.SIGKILL)
		<-exited
	})
	recs, err := reaper.Open(filepath.Join(stateDir, "plugin-pids"), nil)
	if err != nil {
		t.Fatal(err)
	}
	recs.Record(leftover.Process.Pid) // as an earlier run would have
	s := startCrashStack(t, crashOptions{stateDir: stateDir})
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("the leftover plugin %d survived the agent's start", leftover.Process.Pid)
	}
	if v := s.run(t, "faults-llm", "ok"); v.Status != devstudio.JobCompleted {
		t.Errorf("after reaping: %s %q", v.Status, v.Error)
	}
}

func TestPluginIntegrity(t *testing.T) {
	crashBinaries(t)
	sum := func(path string) string {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			t.Fatal(err)
		}
		return hex.EncodeToString(h.Sum(nil))
	}
	good := sum(filepath.Join(binDir, "faults-plugin"))
	t.Run("pin matches", func(t *testing.T) {
		s := startCrashStack(t, crashOptions{env: []string{"STOKER_PLUGIN_SHA256=faults-plugin=" + good}})
		if v := s.run(t, "faults-llm", "ok pinned"); v.Status != devstudio.JobCompleted {
			t.Errorf("pinned plugin: %s %q", v.Status, v.Error)
		}
	})
	t.Run("pin differs", func(t *testing.T) {
		s := startCrashStack(t, crashOptions{env: []string{"STOKER_PLUGIN_SHA256=faults-plugin=" + strings.Repeat("0", 64)}})
		st := s.waitFaults(t, "refused", func(st engines.PluginStatus) bool { return st.Crashes >= 1 })
		if st.State == engines.StateReady || !strings.Contains(st.LastError, "checksum mismatch") || !strings.Contains(st.LastError, good) {
			t.Errorf("state %s, last error %q; want the launch refused naming the real sum", st.State, st.LastError)
		}
		if v := s.run(t, "synthetic-llm", "unpinned serve"); v.Status != devstudio.JobCompleted {
			t.Errorf("synthetic beside a refused plugin: %s %q", v.Status, v.Error)
		}
	})
	writable := []struct {
		name  string
		setup func(dir string) error
	}{
		{"plugin dir writable by others", func(dir string) error { return os.Chmod(dir, 0o777) }},
		{"plugin writable by group", func(dir string) error {
			b, err := os.ReadFile(filepath.Join(binDir, "faults-plugin"))
			if err != nil {
				return err
			}
			path := filepath.Join(dir, "copied-plugin")
			if err := os.WriteFile(path, b, 0o755); err != nil {
				return err
			}
			return os.Chmod(path, 0o775)
		}},
	}
	for _, tt := range writable {
		t.Run(tt.name, func(t *testing.T) {
			dir := crashPluginDir(t)
			if err := tt.setup(dir); err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Load("", []string{"STOKER_API_BASE_URL=http://127.0.0.1:1", "STOKER_STATE_DIR=" + t.TempDir(), "STOKER_PLUGIN_DIR=" + dir, "STOKER_LISTEN="})
			if err != nil {
				t.Fatal(err)
			}
			err = agent.Run(context.Background(), cfg, agent.Options{Logger: hclog.NewInterceptLogger(&hclog.LoggerOptions{Output: io.Discard})})
			if err == nil || !strings.Contains(err.Error(), "writable by group or others") {
				t.Errorf("agent.Run = %v, want a refusal naming the writable path", err)
			}
		})
	}
}
