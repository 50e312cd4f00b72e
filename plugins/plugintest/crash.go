package plugintest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stokerhq/stoker/plugins"
)

// Crash and hang checks. A plugin author proves with these that the
// supervisor will see their plugin's failures for what they are: a crash
// is a retryable crash report carrying the exit status and stderr, a
// cancelled job stops promptly, and a plugin that cannot start says so
// within the start-up timeout. They run the built plugin binary as the
// supervisor does (a crash must be a real process dying):
//
//	func TestCrashes(t *testing.T) {
//		je := plugintest.ExpectCrash(t, pluginPath, &req) // req makes the engine die
//		if je.Signal != "SIGSEGV" { ... }
//	}

// ExpectCrash launches the plugin binary at path (with env added to its
// environment), runs req, and fails the test unless the run ends in a
// retryable crash report (ErrCrashed, or ErrOutOfMemory) that names the
// plugin, after which the process must be gone. It returns the report for
// further checks (Signal, ExitCode, StderrTail).
func ExpectCrash(t testing.TB, path string, req *plugins.RunRequest, env ...string) *plugins.JobError {
	t.Helper()
	p := Launch(t, path, env...)
	_, err := Run(context.Background(), p, req)
	var je *plugins.JobError
	if !errors.As(err, &je) {
		t.Fatalf("run %q: got %v, want a crash report", req.Task.Prompt(), err)
	}
	if je.Kind != plugins.ErrCrashed && je.Kind != plugins.ErrOutOfMemory || !je.Retryable() {
		t.Fatalf("run %q: got %s error %v, want a retryable %s or %s", req.Task.Prompt(), je.Kind, je, plugins.ErrCrashed, plugins.ErrOutOfMemory)
	}
	if je.ExitCode == 0 && je.Signal == "" && je.Kind == plugins.ErrCrashed && len(je.StderrTail) == 0 && je.Message == "" {
		t.Errorf("crash report carries no exit status, signal, stderr or message: %+v", je)
	}
	select {
	case <-p.Exited():
	case <-time.After(CancelBound):
		t.Errorf("the process is still running %v after its crash was reported", CancelBound)
	}
	return je
}

// ExpectCancel runs req on e, waits for its first event (progress, log or
// output), cancels the run and fails the test unless Run returns an error
// within CancelBound. e may be a launched plugin or Connect's engine; req
// must make the engine report something and then keep working.
func ExpectCancel(t testing.TB, e plugins.Engine, req *plugins.RunRequest) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ev := &firstEvent{seen: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx, req, ev) }()
	select {
	case <-ev.seen:
	case err := <-done:
		t.Fatalf("run %q ended (%v) before reporting anything; want it to be still working", req.Task.Prompt(), err)
	case <-time.After(CancelBound):
		t.Fatalf("run %q reported nothing for %v", req.Task.Prompt(), CancelBound)
	}
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Errorf("cancelled run %q succeeded; want an error", req.Task.Prompt())
		}
		return err
	case <-time.After(CancelBound):
		t.Fatalf("run %q ignored cancellation for %v", req.Task.Prompt(), CancelBound)
	}
	return nil
}

// ExpectStartFailure launches the plugin binary at path with env and
// timeout as the start-up bound, and fails the test unless the launch (or
// the first Describe, also within timeout) fails. No process may be left
// behind. It returns the error for further checks.
func ExpectStartFailure(t testing.TB, path string, timeout time.Duration, env ...string) error {
	t.Helper()
	var started atomic.Int64
	p, err := plugins.Launch(plugins.LaunchConfig{Path: path, Env: hostEnv(env), StartTimeout: timeout, Started: func(n int) { started.Store(int64(n)) }})
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		_, err = p.Describe(ctx)
		cancel()
		p.Kill()
		if err == nil {
			t.Fatalf("plugin %s started and described itself; want a failed start", path)
		}
	}
	if pid := int(started.Load()); pid != 0 && processAlive(pid) {
		t.Errorf("failed start left process %d behind", pid)
	}
	return err
}

// firstEvent closes seen at the first event of any sort.
type firstEvent struct {
	Recorder
	once sync.Once
	seen chan struct{}
}

func (f *firstEvent) mark() { f.once.Do(func() { close(f.seen) }) }

func (f *firstEvent) Progress(step, total uint64, unit string) error {
	f.mark()
	return f.Recorder.Progress(step, total, unit)
}

func (f *firstEvent) Log(level, message string) error {
	f.mark()
	return f.Recorder.Log(level, message)
}

func (f *firstEvent) Output(ext string, p []byte) error {
	f.mark()
	return f.Recorder.Output(ext, p)
}
