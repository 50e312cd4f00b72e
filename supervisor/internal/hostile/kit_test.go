package hostile

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestReportPrint(t *testing.T) {
	rep := &Report{Results: []Result{
		{Name: "a", Figures: []string{"rss: +2 MiB"}},
		{Name: "b", Crashed: true, Lost: []string{"job x"}},
		{Name: "c", Unbounded: []string{"memory", "resends"}},
	}}
	var out bytes.Buffer
	rep.Print(&out)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if got, want := lines[len(lines)-1], "node_crashes=1 unbounded=2 lost=1 cases=3"; got != want {
		t.Errorf("last line %q, want %q", got, want)
	}
	for _, want := range []string{"a                            ok", "rss: +2 MiB", "NODE CRASHED", "UNBOUNDED: resends", "LOST: job x"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestCasesAreNamedOnce(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range Cases() {
		if c.Name == "" || c.What == "" || c.Run == nil || seen[c.Name] {
			t.Errorf("case %q: a name, a line and a Run each, and the name once", c.Name)
		}
		seen[c.Name] = true
	}
	if _, err := Run(context.Background(), Config{Cases: []string{"no-such-case"}}); err == nil {
		t.Error("Run with an unknown case name: want an error")
	}
}

// TestKitAgainstTheRealAgent builds stoker and the plugins and runs the
// quick studio cases and two plugin cases at a small scale against the real
// agent process: the kit itself must find the node sound (the script runs
// every case at full scale).
func TestKitAgainstTheRealAgent(t *testing.T) {
	dir := t.TempDir()
	plugins := filepath.Join(dir, "plugins")
	build := exec.Command("go", "build", "-o", dir+"/",
		"github.com/stokerhq/stoker/supervisor/cmd/stoker",
		"github.com/stokerhq/stoker/synthetic-plugin",
		"github.com/stokerhq/stoker/faults-plugin")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	if err := os.Mkdir(plugins, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"synthetic-plugin", "faults-plugin"} {
		if err := os.Rename(filepath.Join(dir, p), filepath.Join(plugins, p)); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{dir, plugins} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var agentLog bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Config{
		Stoker: filepath.Join(dir, "stoker"), PluginDir: plugins, WorkDir: filepath.Join(dir, "work"),
		Cases: []string{"offer-flood-slow-reader", "malformed-frames", "close-1009", "empty-strings", "upload-411",
			"plugin-raw-log-40m", "plugin-huge-result"},
		Scale: 0.02, CaseTimeout: time.Minute, AgentLog: &agentLog,
	})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	rep.Print(&out)
	t.Log("\n" + out.String())
	if c, u, l := rep.Counts(); c+u+l != 0 || len(rep.Results) != 7 {
		t.Errorf("node_crashes=%d unbounded=%d lost=%d over %d cases, want none over 7; agent log tail:\n%s",
			c, u, l, len(rep.Results), tail(agentLog.String(), 40))
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
