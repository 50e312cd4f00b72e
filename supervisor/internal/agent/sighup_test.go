package agent_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stokerhq/stoker/supervisor/internal/devstudio"
)

// TestSIGHUPReloadsLogLevel: SIGHUP (what `systemctl reload` and a closed
// terminal send) must not kill the agent. It reloads log_level from the
// config file, and a config that does not load is logged and ignored.
func TestSIGHUPReloadsLogLevel(t *testing.T) {
	srv := newDrainStudio(t)
	cfgPath := filepath.Join(t.TempDir(), "stoker.toml")
	writeConfig := func(body string) {
		t.Helper()
		if err := os.WriteFile(cfgPath, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig(`log_level = "info"`)
	p := startStokerArgs(t, srv, []string{"-config", cfgPath})
	p.waitLine(t, "agent running")

	// Quieter: warn. A job's info lines must not appear.
	writeConfig(`log_level = "warn"`)
	p.signal(t, syscall.SIGHUP)
	p.waitLine(t, "config reloaded")
	id := submitAsync(t, srv, "faults-llm", "ok quiet")
	if v := waitJob(t, srv, id, "finished", done); v.Status != devstudio.JobCompleted {
		t.Fatalf("job after SIGHUP: %s %q", v.Status, v.Error)
	}
	// Louder again: the reload line itself, then the next job's lines.
	writeConfig(`log_level = "debug"`)
	p.signal(t, syscall.SIGHUP)
	if seen := p.linesUntil(t, "config reloaded"); containsLine(seen, "job started") {
		t.Errorf("a job logged at info while log_level was warn:\n%s", strings.Join(seen, "\n"))
	}
	id = submitAsync(t, srv, "faults-llm", "ok loud")
	p.waitLine(t, "job started")
	if v := waitJob(t, srv, id, "finished", done); v.Status != devstudio.JobCompleted {
		t.Fatalf("job after the second SIGHUP: %s %q", v.Status, v.Error)
	}

	// A config that does not load: logged, the agent carries on.
	writeConfig(`log_level = "loud"`)
	p.signal(t, syscall.SIGHUP)
	p.waitLine(t, "config not reloaded")
	id = submitAsync(t, srv, "faults-llm", "ok after a bad reload")
	if v := waitJob(t, srv, id, "finished", done); v.Status != devstudio.JobCompleted {
		t.Fatalf("job after a bad reload: %s %q", v.Status, v.Error)
	}

	p.signal(t, syscall.SIGTERM)
	if code := p.exitCode(t); code != 0 {
		t.Errorf("stoker exited with %d after SIGTERM, want 0", code)
	}
}

func (p *stokerProcess) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// linesUntil returns the stderr lines up to and including the first one
// containing s.
func (p *stokerProcess) linesUntil(t *testing.T, s string) []string {
	t.Helper()
	var seen []string
	deadline := time.After(30 * time.Second)
	for {
		select {
		case l := <-p.lines:
			seen = append(seen, l)
			if strings.Contains(l, s) {
				return seen
			}
		case <-p.exited:
			t.Fatalf("stoker exited (%v) before logging %q", p.waitErr, s)
		case <-deadline:
			t.Fatalf("stoker never logged %q", s)
		}
	}
}

func containsLine(lines []string, s string) bool {
	for _, l := range lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}
