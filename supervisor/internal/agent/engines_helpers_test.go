//go:build llamacpp || whispercpp || sdcpp || onnx

package agent_test

// The stack the real-engine tests and benchmarks run on: a dev studio and
// an agent in this process whose plugin dir links engine plugins built with
// their engines (cgo, behind each plugin's build tag; the onnx plugin opens
// ONNX Runtime at run time), and whose catalog holds the dev models
// (tiny-llama, tiny-whisper, tiny-sd, tiny-lama) served from the studio's
// FilesDir and downloaded by the agent like any model. The cgo flags come
// from the environment:
//
//	scripts/install-engines.sh && source scripts/engines/env.sh

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/stokerhq/stoker/supervisor/internal/devmodels"
	"github.com/stokerhq/stoker/supervisor/internal/devstudio"
	"github.com/stokerhq/stoker/supervisor/internal/engines"
)

// enginePlugins builds each engine plugin, by its directory in the module,
// with the tag that links its engine, once per test binary run, into
// binDir/engines (TestMain removes it). Filled once here, read only after.
var enginePlugins = map[string]func() (string, error){
	"llamacpp-plugin": buildEnginePlugin("llamacpp-plugin", "llamacpp"),
	"whisper-plugin":  buildEnginePlugin("whisper-plugin", "whispercpp"),
	"sdcpp-plugin":    buildEnginePlugin("sdcpp-plugin", "sdcpp"),
	"onnx-plugin":     buildEnginePlugin("onnx-plugin", "onnx"),
	// The Python example plugin (espeak_e2e_test.go).
	"espeak-tts-plugin": buildEspeakPlugin,
}

func buildEnginePlugin(name, tag string) func() (string, error) {
	return sync.OnceValues(func() (string, error) {
		dir := filepath.Join(binDir, "engines")
		out, err := exec.Command("go", "build", "-tags", tag, "-o", dir+"/", "github.com/stokerhq/stoker/"+name).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("build %s with %s (run scripts/install-engines.sh and source scripts/engines/env.sh): %w\n%s", name, tag, err, out)
		}
		return filepath.Join(dir, name), nil
	})
}

// devModels generates the dev models once per test binary run (tiny-sd
// alone is about 190 MB) into binDir/dev-models; each stack serves them
// from its own FilesDir through symlinks.
var devModels = sync.OnceValues(func() ([]devmodels.Model, error) {
	return devmodels.Ensure(filepath.Join(binDir, "dev-models"))
})

// engineStack is a stack running real engine plugins, with the dev models
// in its catalog.
type engineStack struct {
	*stack
	log     hclog.InterceptLogger // the studio's and the agent's
	catalog *devstudio.Catalog
	models  map[string]devmodels.Model // by catalog id
}

type engineOptions struct {
	plugins     []string // engine plugins to run, e.g. "sdcpp-plugin"
	maxAttempts int      // per job, the dev studio's (default 3)
	listen      string   // the local API's address; "" turns it off
}

// startEngineStack starts an engineStack that stops when tb ends. The
// plugins inherit this process's environment (their settings, such as
// STOKER_LLAMA_THREADS, are set with tb.Setenv before the call). The log of
// the stack is printed if tb fails.
func startEngineStack(tb testing.TB, o engineOptions) *engineStack {
	tb.Helper()
	pluginDir := tb.TempDir()
	for _, name := range o.plugins {
		build, ok := enginePlugins[name]
		if !ok {
			tb.Fatalf("no engine plugin %q", name)
		}
		bin, err := build()
		if err != nil {
			tb.Fatal(err)
		}
		linkPlugin(tb, bin, filepath.Join(pluginDir, name))
	}
	ms, err := devModels()
	if err != nil {
		tb.Fatal(err)
	}
	files := tb.TempDir()
	for _, m := range ms {
		if err := os.Symlink(m.Path, filepath.Join(files, m.Filename)); err != nil {
			tb.Fatal(err)
		}
	}

	logs := &syncBuffer{}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("stack log:\n%s", logs.String())
		}
	})
	log := hclog.NewInterceptLogger(&hclog.LoggerOptions{Name: "stoker", Level: hclog.Info, Output: logs})
	cat := devstudio.NewCatalog()
	srv, err := devstudio.New(devstudio.Config{
		Addr: "127.0.0.1:0", AutoApprove: true, Catalog: cat, MaxAttempts: o.maxAttempts,
		FilesDir: files, ResultsDir: tb.TempDir(), Logger: log,
	})
	if err != nil {
		tb.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { srv.Close() })
	if err := devmodels.AddToCatalog(srv, cat, ms); err != nil {
		tb.Fatal(err)
	}

	a, state, _ := runAgentWith(tb, srv.URL(), pluginDir, log, "STOKER_LISTEN="+o.listen)
	es := &engineStack{
		stack: &stack{studio: srv, agent: a, files: files, state: state},
		log:   log, catalog: cat, models: map[string]devmodels.Model{},
	}
	for _, m := range ms {
		es.models[m.ID] = m
	}
	return es
}

// timedJob submits one job and waits until it is done; it fails tb unless
// the job completed, and returns the job and the wall time from submission
// to the stored result.
func (s *engineStack) timedJob(tb testing.TB, model string, task []byte) (devstudio.JobView, time.Duration) {
	tb.Helper()
	start := time.Now()
	id, err := s.studio.Submit(model, task)
	if err != nil {
		tb.Fatalf("submit %s: %v", model, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	v, err := s.studio.WaitJob(ctx, id, func(v devstudio.JobView) bool { return v.Status.Done() })
	wall := time.Since(start)
	if err != nil {
		tb.Fatalf("job %s (%s): %v; last view %+v", id, model, err, v)
	}
	if v.Status != devstudio.JobCompleted {
		tb.Fatalf("job %s (%s) %s after %d attempts: %s", id, model, v.Status, v.Attempts, v.Error)
	}
	return v, wall
}

// waitPlugin waits until the status of the plugin named name (its
// executable's name) satisfies cond, and returns it.
func (s *engineStack) waitPlugin(tb testing.TB, name string, cond func(engines.PluginStatus) bool) engines.PluginStatus {
	tb.Helper()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for {
		for _, st := range s.agent.Engines().Status() {
			if st.Name == name && cond(st) {
				return st
			}
		}
		select {
		case <-s.agent.Engines().Changed():
		case <-deadline.C:
			tb.Fatalf("%s: condition never met: %+v", name, s.agent.Engines().Status())
		}
	}
}

// killMidJob kills the plugin process pid (SIGKILL) while job id runs on
// it, waits for the job to end and wants it failed retryably, as a crash
// must be reported. It returns the job's view and when the kill was sent.
func (s *engineStack) killMidJob(ctx context.Context, tb testing.TB, id string, pid int) (devstudio.JobView, time.Time) {
	tb.Helper()
	killed := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		tb.Fatal(err)
	}
	v, err := s.studio.WaitJob(ctx, id, func(v devstudio.JobView) bool { return v.Status.Done() })
	if err != nil {
		tb.Fatal(err)
	}
	if v.Status != devstudio.JobFailed || !v.Retryable {
		tb.Fatalf("job after SIGKILL: %s retryable=%v %q, want a retryable fail", v.Status, v.Retryable, v.Error)
	}
	tb.Logf("killed pid %d: %s", pid, v.Error)
	return v, killed
}
