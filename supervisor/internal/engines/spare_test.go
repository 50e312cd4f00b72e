package engines_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/supervisor/internal/engines"
)

// pidSet is a PidRecorder that keeps the live plugin processes.
type pidSet struct {
	mu   sync.Mutex
	live map[int]bool
	all  []int
}

func (r *pidSet) Record(pid int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.live == nil {
		r.live = map[int]bool{}
	}
	r.live[pid] = true
	r.all = append(r.all, pid)
}

func (r *pidSet) Forget(pid int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.live, pid)
}

func (r *pidSet) snapshot() (live, all []int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for pid := range r.live {
		live = append(live, pid)
	}
	return live, slices.Clone(r.all)
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == ')' {
			return i+2 >= len(b) || b[i+2] != 'Z'
		}
	}
	return true
}

func itoa(n int) string {
	var b []byte
	for n > 0 || len(b) == 0 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(b)
}

// waitStatus waits on the host's change notices until cond holds.
func waitStatus(t *testing.T, h *engines.Host, what string, cond func(engines.PluginStatus) bool) engines.PluginStatus {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		if st := h.Status()[0]; cond(st) {
			return st
		}
		select {
		case <-h.Changed():
		case <-deadline:
			t.Fatalf("%s: never came; status %+v", what, h.Status()[0])
		}
	}
}

// The warm spare is an idle process beside the serving one, not serving
// (its pid is not the status's Pid); a crash swaps it in, and a new spare
// follows. Closing the host leaves no process behind.
func TestSpareSwappedInOnCrash(t *testing.T) {
	pids := &pidSet{}
	h := startHost(t, engines.Config{Pids: pids, Breaker: engines.Breaker{Crashes: 10}})
	st := waitStatus(t, h, "a ready plugin with a spare", func(st engines.PluginStatus) bool {
		return st.State == engines.StateReady && st.SparePid != 0
	})
	serving, spare := st.Pid, st.SparePid
	if serving == spare || !alive(spare) {
		t.Fatalf("serving %d, spare %d (alive %v): want two processes", serving, spare, alive(spare))
	}
	if _, err := run(h, llm("bad", "crash")); plugins.AsJobError(err) == nil {
		t.Fatalf("crash job: %v", err)
	}
	st = waitStatus(t, h, "the spare serving and a new spare", func(st engines.PluginStatus) bool {
		return st.State == engines.StateReady && st.Restarts == 1 && st.SparePid != 0 && st.SparePid != spare
	})
	if st.Pid != spare {
		t.Errorf("serving pid %d after the crash, want the spare %d swapped in", st.Pid, spare)
	}
	if _, err := run(h, llm("next", "hi")); err != nil {
		t.Errorf("the swapped-in spare does not serve: %v", err)
	}
	h.Close()
	live, all := pids.snapshot()
	if len(live) != 0 {
		t.Errorf("processes still recorded after Close: %v", live)
	}
	for _, pid := range all {
		if alive(pid) {
			t.Errorf("plugin process %d outlived the host", pid)
		}
	}
	if len(all) != 3 {
		t.Errorf("%d processes started (%v), want 3: the first, its spare, the spare's successor", len(all), all)
	}
}

// With NoSpare there is none, and a crash relaunches as before.
func TestNoSpare(t *testing.T) {
	h := startHost(t, engines.Config{NoSpare: true, Breaker: engines.Breaker{Crashes: 10}})
	waitState(t, h, engines.StateReady)
	first := h.Status()[0].Pid
	if _, err := run(h, llm("bad", "crash")); plugins.AsJobError(err) == nil {
		t.Fatalf("crash job: %v", err)
	}
	st := waitFor(t, h, engines.StateReady, 1)
	if st.SparePid != 0 || st.Pid == first {
		t.Errorf("status %+v: want no spare and a new serving process", st)
	}
}

// A crash that trips the breaker quarantines the plugin: the spare is not
// swapped in but killed, and none is kept while out of service.
func TestQuarantineKillsTheSpare(t *testing.T) {
	h := startHost(t, engines.Config{Breaker: engines.Breaker{Crashes: 2, Window: time.Hour, Cooldown: time.Hour}})
	var spares []int
	for i, job := range []string{"a", "b"} {
		st := waitStatus(t, h, "ready with a spare", func(st engines.PluginStatus) bool {
			return st.State == engines.StateReady && st.Restarts == i && st.SparePid != 0
		})
		spares = append(spares, st.SparePid)
		if _, err := run(h, llm(job, "crash")); plugins.AsJobError(err) == nil {
			t.Fatalf("crash %d: %v", i, err)
		}
	}
	st := waitState(t, h, engines.StateQuarantined)
	if st.Pid == spares[1] || st.SparePid != 0 {
		t.Errorf("quarantined status %+v: want no serving process and no spare", st)
	}
	if alive(spares[1]) {
		t.Errorf("spare %d lives on through the quarantine", spares[1])
	}
	if len(h.Offerings()) != 0 {
		t.Errorf("a quarantined plugin advertises %v", h.Offerings())
	}
}

// A spare is launched as any instance is: pinned, it is hashed at its own
// launch. Once the file no longer matches its pin, no new spare starts
// (the one launched before the change still serves, checked when it
// started), and when that one dies the relaunch is refused too.
func TestSpareLaunchKeepsThePin(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "pinned-plugin")
	if err := os.WriteFile(path, b, 0o755); err != nil {
		t.Fatal(err)
	}
	h, err := engines.Start(context.Background(), engines.Config{
		Plugins: []string{path}, Env: []string{envServe + "=1"},
		SHA256: map[string]string{path: sumOf(t, path)}, Breaker: engines.Breaker{Crashes: 10},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	st := waitStatus(t, h, "ready with a spare", func(st engines.PluginStatus) bool {
		return st.State == engines.StateReady && st.SparePid != 0
	})
	spare := st.SparePid
	// Other bytes under the pinned name (a new file, as an upgrade
	// writes one).
	tmp := path + ".new"
	if err := os.WriteFile(tmp, append(b, 0), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	if _, err := run(h, llm("bad", "crash")); plugins.AsJobError(err) == nil {
		t.Fatalf("crash job: %v", err)
	}
	st = waitStatus(t, h, "the spare serving", func(st engines.PluginStatus) bool {
		return st.State == engines.StateReady && st.Restarts == 1
	})
	if st.Pid != spare {
		t.Fatalf("serving pid %d, want the spare %d", st.Pid, spare)
	}
	if _, err := run(h, llm("bad2", "crash")); plugins.AsJobError(err) == nil {
		t.Fatalf("second crash job: %v", err)
	}
	st = waitStatus(t, h, "the relaunch refused", func(st engines.PluginStatus) bool {
		return st.Restarts >= 2 && strings.Contains(st.LastError, "checksum")
	})
	if st.State == engines.StateReady || st.SparePid != 0 {
		t.Errorf("status %+v: want no instance of the changed file serving, and no spare", st)
	}
}
