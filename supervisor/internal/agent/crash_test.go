package agent_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stokerhq/stoker/faults-plugin/faults"
	"github.com/stokerhq/stoker/internal/cgrouptest"
	"github.com/stokerhq/stoker/supervisor/internal/devstudio"
	"github.com/stokerhq/stoker/supervisor/internal/engines"
)

// Crash isolation end to end: each fault class through the real agent, the
// real dev studio and real plugin processes. Each case asserts what the
// studio received and that the node then serves the next job, on the
// faults plugin and on the synthetic one.

func TestCrashClassesReachTheStudio(t *testing.T) {
	s := startCrashStack(t, crashOptions{})
	tests := []struct {
		prompt string
		kind   string   // the fail message starts with it
		words  []string // each in the fail message
	}{
		{"segv", "crashed", []string{"faults-plugin crashed mid-job", "SIGSEGV", "faults: injecting segv"}},
		{"segv-raw", "crashed", []string{"killed by SIGSEGV", "faults: injecting segv-raw"}},
		{"abort", "crashed", []string{"SIGABRT", "faults: injecting abort"}},
		{"panic", "crashed", []string{"exited with code 2", "panic: faults: injected panic"}},
		{"exit=3", "crashed", []string{"exited with code 3", "faults: injecting exit"}},
		{"sigkill", "crashed", []string{"killed by SIGKILL", "faults: injecting sigkill"}},
		{"alloc", "out_of_memory", []string{"faults-plugin ran out of memory", "fatal error: out of memory"}},
		{"hang", "stalled", []string{"faults-plugin reported no progress for 3s; killed"}},
		{"break-transport", "crashed", []string{"faults-plugin: transport broke mid-job", "faults: injecting break-transport"}},
	}
	restarts := s.faultsStatus(t).Restarts
	for _, tt := range tests {
		t.Run(tt.prompt, func(t *testing.T) {
			v := s.run(t, "faults-llm", tt.prompt+" "+t.Name())
			if v.Status != devstudio.JobFailed || !v.Retryable {
				t.Fatalf("studio has %s retryable=%v (%q), want a retryable failure", v.Status, v.Retryable, v.Error)
			}
			if !strings.HasPrefix(v.Error, tt.kind+": ") {
				t.Errorf("fail message %q, want it to start with %q", v.Error, tt.kind+": ")
			}
			for _, w := range tt.words {
				if !strings.Contains(v.Error, w) {
					t.Errorf("fail message %q lacks %q", v.Error, w)
				}
			}
			restarts++
			s.waitFaults(t, "relaunched", func(st engines.PluginStatus) bool {
				return st.State == engines.StateReady && st.Restarts >= restarts
			})
			if v := s.run(t, "faults-llm", "ok after "+tt.prompt); v.Status != devstudio.JobCompleted {
				t.Errorf("next faults job: %s %q, want completed", v.Status, v.Error)
			}
			if v := s.run(t, "synthetic-llm", "still serving"); v.Status != devstudio.JobCompleted {
				t.Errorf("synthetic job after the crash: %s %q, want completed", v.Status, v.Error)
			}
		})
	}
	// The synthetic plugin never restarted throughout.
	for _, st := range s.agent.Engines().Status() {
		if st.Name == "synthetic-plugin" && st.Restarts != 0 {
			t.Errorf("synthetic-plugin restarted %d times; a faults crash must not touch it", st.Restarts)
		}
	}
}

func TestStdoutGarbageMidJobIsHarmlessEndToEnd(t *testing.T) {
	s := startCrashStack(t, crashOptions{})
	if v := s.run(t, "faults-llm", "stdout-garbage"); v.Status != devstudio.JobCompleted {
		t.Fatalf("got %s %q, want completed", v.Status, v.Error)
	}
	if st := s.faultsStatus(t); st.Restarts != 0 {
		t.Errorf("faults-plugin restarted %d times after writing to stdout", st.Restarts)
	}
}

func TestKernelOOMEndToEnd(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a memory cgroup; CI runs as root")
	}
	cg := cgrouptest.Memory(t, "stoker-agent-test", 64<<20)
	t.Setenv(faults.EnvCgroup, cg) // every faults-plugin launch joins it
	s := startCrashStack(t, crashOptions{})
	v := s.run(t, "faults-llm", "oom-kernel")
	if v.Status != devstudio.JobFailed || !v.Retryable || !strings.HasPrefix(v.Error, "out_of_memory: ") || !strings.Contains(v.Error, "OOM killer") {
		t.Fatalf("studio has %s retryable=%v %q, want a retryable out_of_memory by the OOM killer", v.Status, v.Retryable, v.Error)
	}
	s.waitFaults(t, "relaunched", func(st engines.PluginStatus) bool { return st.State == engines.StateReady && st.Restarts >= 1 })
	if v := s.run(t, "faults-llm", "ok"); v.Status != devstudio.JobCompleted {
		t.Errorf("next job: %s %q", v.Status, v.Error)
	}
}

// TestPoisonJob: a job that brings down two plugin instances here fails
// retryable each time (a bigger node may serve it; the studio's attempt
// count bounds it), and this node then refuses it when it is offered again,
// without a transient code, so the studio offers it elsewhere.
func TestPoisonJob(t *testing.T) {
	s := startCrashStack(t, crashOptions{maxAttempts: 3})
	v := s.run(t, "faults-llm", "sigkill poison")
	if v.Status != devstudio.JobFailed || v.Attempts != 3 {
		t.Fatalf("studio has %s attempts=%d (%q); want failed after 3 attempts (two crashes, one refusal)", v.Status, v.Attempts, v.Error)
	}
	if !strings.Contains(v.Error, "refus") || !strings.Contains(v.Error, "brought down 2 faults-plugin instances") {
		t.Errorf("final error %q, want this node's refusal naming the two instances the job brought down", v.Error)
	}
	var points []devstudio.Point
	for _, f := range s.frames.all(v.ID) {
		if f.Point != devstudio.PointHeartbeat {
			points = append(points, f.Point)
		}
	}
	want := []devstudio.Point{devstudio.PointAccept, devstudio.PointFail, devstudio.PointAccept, devstudio.PointFail, devstudio.PointReject}
	if !slices.Equal(points, want) {
		t.Errorf("frames for the job %v, want %v", points, want)
	}
	if !v.Retryable {
		t.Errorf("the last fail was not retryable; a job that crashed plugins here may still run on a bigger node")
	}
	s.waitFaults(t, "relaunched", func(st engines.PluginStatus) bool { return st.State == engines.StateReady && st.Restarts >= 2 })
	if v := s.run(t, "faults-llm", "ok"); v.Status != devstudio.JobCompleted {
		t.Errorf("next job: %s %q", v.Status, v.Error)
	}
}

func TestCrashLoopQuarantineAndRecovery(t *testing.T) {
	s := startCrashStack(t, crashOptions{env: []string{
		"STOKER_PLUGIN_CRASH_LIMIT=2", "STOKER_PLUGIN_CRASH_WINDOW=1m", "STOKER_PLUGIN_QUARANTINE=1500ms",
	}})
	for i := range 2 {
		if v := s.run(t, "faults-llm", "exit=1 loop-"+strconv.Itoa(i)); v.Status != devstudio.JobFailed || !v.Retryable {
			t.Fatalf("crash %d: studio has %s retryable=%v", i, v.Status, v.Retryable)
		}
	}
	s.waitFaults(t, "quarantined", func(st engines.PluginStatus) bool { return st.State == engines.StateQuarantined })
	id := s.workerID(t, context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The faults models leave the advertised capabilities; synthetic's stay.
	if _, err := s.studio.WaitWorker(ctx, id, func(w devstudio.WorkerView) bool {
		return w.Capabilities != nil && !contains(w.Capabilities.SupportedModels, "faults-llm") && contains(w.Capabilities.SupportedModels, "synthetic-llm")
	}); err != nil {
		t.Fatalf("heartbeats still advertise faults-llm while quarantined: %v", err)
	}
	if v := s.run(t, "synthetic-llm", "other kinds serve"); v.Status != devstudio.JobCompleted {
		t.Errorf("synthetic during quarantine: %s %q", v.Status, v.Error)
	}
	// An offer for it is rejected busy, which costs the job no attempt (the
	// stack's studio allows one): the job is requeued and runs once the
	// plugin is back.
	v := s.run(t, "faults-llm", "ok while quarantined")
	if v.Status != devstudio.JobCompleted || v.Attempts != 0 {
		t.Errorf("offer during quarantine: studio has %s attempts=%d %q, want it completed after the cooldown, no attempt spent", v.Status, v.Attempts, v.Error)
	}
	if fr := s.frames.all(v.ID); len(fr) == 0 || fr[0].Point != devstudio.PointReject {
		t.Errorf("frames for the job offered during quarantine %v, want a reject first", fr)
	}
	// After the cooldown a re-probe brought it back.
	s.waitFaults(t, "back after the cooldown", func(st engines.PluginStatus) bool { return st.State == engines.StateReady })
	if _, err := s.studio.WaitWorker(ctx, id, func(w devstudio.WorkerView) bool {
		return w.Capabilities != nil && contains(w.Capabilities.SupportedModels, "faults-llm")
	}); err != nil {
		t.Fatalf("faults-llm not advertised again after the re-probe: %v", err)
	}
	if v := s.run(t, "faults-llm", "ok after quarantine"); v.Status != devstudio.JobCompleted {
		t.Errorf("after the re-probe: %s %q", v.Status, v.Error)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestFailedStartsAreCountedAndHeal(t *testing.T) {
	tests := []struct {
		name  string
		env   []string
		words string // in the plugin's last error
	}{
		{"slow start", []string{faults.EnvStart + "=slow=30s"}, "timeout"},
		{"garbage on stdout", []string{faults.EnvStart + "=garbage"}, "Unrecognized remote plugin message"},
		{"describe never answers", []string{faults.EnvDescribe + "=hang"}, "describe within 500ms"},
		{"wrong contract", []string{faults.EnvDescribe + "=wrong-contract"}, "contract v99"},
		{"bogus kinds", []string{faults.EnvDescribe + "=bogus-kinds"}, `unknown task kind "teleport"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			armed := filepath.Join(t.TempDir(), "armed")
			if err := os.WriteFile(armed, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			t.Setenv(faults.EnvOnlyIfFile, armed)
			for _, kv := range tt.env {
				k, v, _ := strings.Cut(kv, "=")
				t.Setenv(k, v)
			}
			s := startCrashStack(t, crashOptions{env: []string{"STOKER_PLUGIN_START_TIMEOUT=500ms"}})
			st := s.waitFaults(t, "counted a failed start", func(st engines.PluginStatus) bool { return st.Crashes >= 1 })
			if !strings.Contains(st.LastError, tt.words) {
				t.Errorf("last error %q lacks %q", st.LastError, tt.words)
			}
			if st.State == engines.StateReady {
				t.Errorf("a plugin that failed its start is %s", st.State)
			}
			if v := s.run(t, "synthetic-llm", "others serve"); v.Status != devstudio.JobCompleted {
				t.Errorf("synthetic while faults fails to start: %s %q", v.Status, v.Error)
			}
			if err := os.Remove(armed); err != nil {
				t.Fatal(err)
			}
			s.waitFaults(t, "healed", func(st engines.PluginStatus) bool { return st.State == engines.StateReady })
			if v := s.run(t, "faults-llm", "ok healed"); v.Status != devstudio.JobCompleted {
				t.Errorf("after healing: %s %q", v.Status, v.Error)
			}
		})
	}
}
