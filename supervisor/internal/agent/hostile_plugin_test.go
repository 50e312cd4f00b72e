package agent_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/supervisor/internal/devstudio"
	"github.com/stokerhq/stoker/supervisor/internal/engines"
)

// TestHostilePluginCostsOneJob: the faults plugin's hostile faults through
// the real agent and dev studio. Each costs at most its own job, with the
// kind the host gives it; the node then serves the next job on the same
// plugin, and nothing it sent reaches the studio unbounded.
func TestHostilePluginCostsOneJob(t *testing.T) {
	s := startCrashStack(t, crashOptions{env: []string{"STOKER_JOB_TIMEOUTS=llm=2s"}})
	tests := []struct {
		prompt    string
		status    devstudio.JobStatus
		retryable bool
		words     string // in the fail message
		restarts  int    // plugin relaunches it costs
	}{
		{"huge-log=40MiB", devstudio.JobCompleted, false, "", 0},
		{"raw-log=40MiB", devstudio.JobFailed, true, "engine_error: plugin broke the engine contract: a message over the limit", 0},
		{"raw-result=64MiB", devstudio.JobFailed, true, "a message over the limit", 0},
		{"huge-result=5MiB", devstudio.JobFailed, false, "bad_input: the JSON result is 5242880 bytes, over the limit", 0},
		{"lie-size", devstudio.JobFailed, true, "engine_error: plugin broke the engine contract", 0},
		{"log-flood=20000", devstudio.JobCompleted, false, "", 0},
		{"stderr-flood=20000", devstudio.JobCompleted, false, "", 0},
		{"progress-hang", devstudio.JobFailed, true, "timed_out: plugin faults-plugin ran the llm job past its 2s deadline", 1},
	}
	restarts := s.faultsStatus(t).Restarts
	for _, tt := range tests {
		t.Run(tt.prompt, func(t *testing.T) {
			v := s.run(t, "faults-llm", tt.prompt+" "+t.Name())
			if v.Status != tt.status || v.Status == devstudio.JobFailed && (v.Retryable != tt.retryable || !strings.Contains(v.Error, tt.words)) {
				t.Fatalf("studio has %s retryable=%v %q; want %s retryable=%v with %q", v.Status, v.Retryable, v.Error, tt.status, tt.retryable, tt.words)
			}
			restarts += tt.restarts
			st := s.waitFaults(t, "serving", func(st engines.PluginStatus) bool {
				return st.State == engines.StateReady && st.Restarts >= restarts
			})
			if st.Restarts != restarts {
				t.Errorf("faults-plugin restarted %d times, want %d", st.Restarts, restarts)
			}
			if v := s.run(t, "faults-llm", "ok after "+tt.prompt); v.Status != devstudio.JobCompleted {
				t.Errorf("next job: %s %q", v.Status, v.Error)
			}
		})
	}
	id := s.workerID(t, context.Background())
	logs, _ := s.studio.WorkerLogs(id)
	for _, e := range logs {
		if len(e.Message) > plugins.MaxLogBytes+256 {
			t.Errorf("a log entry of %d bytes reached the studio (%.60q…)", len(e.Message), e.Message)
		}
	}
}
