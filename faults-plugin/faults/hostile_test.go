package faults_test

import (
	"context"
	"github.com/stokerhq/stoker/internal/syncbuf"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/stokerhq/stoker/faults-plugin/faults"
	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/plugins/plugintest"
)

// The hostile plugin: each case sends too much, for too long, or lies, and
// the host must bound what it takes, fail at most the one job, and keep the
// plugin serving when it still can.

// logBound is the most a log line may weigh once the host has it: the
// SDK's cut plus the marker that says so.
const logBound = plugins.MaxLogBytes + 64

func TestHostileLogLinesAreCut(t *testing.T) {
	p := plugintest.Launch(t, pluginPath)
	for _, prompt := range []string{"huge-log=40MiB", "raw-log=1MiB"} {
		t.Run(prompt, func(t *testing.T) {
			rec, err := plugintest.Run(context.Background(), p, llm(prompt))
			if err != nil {
				t.Fatalf("run: %v; want the job to succeed with its log line cut", err)
			}
			logs := rec.Logs()
			if len(logs) != 1 {
				t.Fatalf("got %d log lines, want 1", len(logs))
			}
			if n := len(logs[0]); n > logBound || !strings.Contains(logs[0], "bytes cut") {
				t.Errorf("log line of %d bytes (%.40q…), want at most %d with a marker saying it was cut", n, logs[0], logBound)
			}
		})
	}
}

func TestHostileMessagesOverTheLimitFailOneJob(t *testing.T) {
	p := plugintest.Launch(t, pluginPath)
	pid := p.Pid()
	for _, prompt := range []string{"raw-log=40MiB", "raw-output=8MiB", "raw-result=64MiB"} {
		t.Run(prompt, func(t *testing.T) {
			_, err := plugintest.Run(context.Background(), p, llm(prompt))
			je := plugins.AsJobError(err)
			if je == nil || je.Kind != plugins.ErrEngine || !strings.Contains(je.Message, "limit") {
				t.Fatalf("got %v, want an engine error naming the message limit", err)
			}
			// The transport is intact: the same process serves on.
			if _, err := plugintest.Run(context.Background(), p, llm("ok")); err != nil || p.Pid() != pid {
				t.Errorf("next job: %v (pid %d, was %d); want the same plugin to serve", err, p.Pid(), pid)
			}
		})
	}
}

func TestHostileResultsOverTheLimitAreFinal(t *testing.T) {
	p := plugintest.Launch(t, pluginPath)
	for _, prompt := range []string{"huge-result=5MiB", "raw-result=4100KiB"} {
		t.Run(prompt, func(t *testing.T) {
			rec, err := plugintest.Run(context.Background(), p, llm(prompt))
			je := plugins.AsJobError(err)
			if je == nil || je.Kind != plugins.ErrBadInput || je.Retryable() || !strings.Contains(je.Message, "limit") {
				t.Fatalf("got %v (%d result bytes), want a final bad_input naming the result limit", err, len(rec.JSON()))
			}
			if _, err := plugintest.Run(context.Background(), p, llm("ok")); err != nil {
				t.Errorf("next job: %v", err)
			}
		})
	}
}

func TestHostileLyingSizes(t *testing.T) {
	p := plugintest.Launch(t, pluginPath)
	_, err := plugintest.Run(context.Background(), p, llm("lie-size"))
	if je := plugins.AsJobError(err); je == nil || je.Kind != plugins.ErrEngine || !strings.Contains(je.Message, "engine contract") {
		t.Errorf("lie-size: got %v, want an engine contract breach", err)
	}
	rec, err := plugintest.Run(context.Background(), p, llm("lie-progress"))
	if err != nil {
		t.Fatalf("lie-progress: %v", err)
	}
	for _, pr := range rec.Events() {
		if pr.Total > 0 && pr.Step > pr.Total {
			t.Errorf("progress %d of %d reached the host; want step at most total", pr.Step, pr.Total)
		}
	}
}

func TestHostileLogFloodIsThinned(t *testing.T) {
	p := plugintest.Launch(t, pluginPath)
	const sent = 20000
	rec, err := plugintest.Run(context.Background(), p, llm("log-flood=20000"))
	if err != nil {
		t.Fatal(err)
	}
	logs := rec.Logs()
	if len(logs) >= sent/2 {
		t.Errorf("%d of %d flooded lines reached the host; want them thinned", len(logs), sent)
	}
	if !strings.Contains(strings.Join(logs, "\n"), "dropped") {
		t.Errorf("no line says lines were dropped (last: %q)", logs[len(logs)-1])
	}
}

func TestHostileStderrFloodIsThinned(t *testing.T) {
	var out syncBuffer
	log := hclog.New(&hclog.LoggerOptions{Output: &out, Level: hclog.Trace})
	p, err := plugins.Launch(plugins.LaunchConfig{Path: pluginPath, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	const sent = 20000
	if _, err := plugintest.Run(context.Background(), p, llm("stderr-flood=20000")); err != nil {
		t.Fatal(err)
	}
	p.Kill() // the host has read the plugin's stderr to its end
	got := strings.Count(out.String(), "stderr flood line")
	if got >= sent/2 {
		t.Errorf("%d of %d stderr lines reached the host's log; want them thinned", got, sent)
	}
	if !strings.Contains(out.String(), "dropped") {
		t.Errorf("the host's log does not say lines were dropped")
	}
}

func TestHostileDescribeIsRefused(t *testing.T) {
	for _, lie := range []string{"huge", "many-models"} {
		t.Run(lie, func(t *testing.T) {
			err := plugintest.ExpectStartFailure(t, pluginPath, plugintest.CancelBound, faults.EnvDescribe+"="+lie)
			if err == nil || !strings.Contains(err.Error(), "limit") {
				t.Errorf("got %v, want a start failure naming the limit", err)
			}
		})
	}
}

// syncBuffer is a concurrency-safe log sink.
type syncBuffer = syncbuf.Buffer
