package fleet

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stokerhq/stoker/supervisor/internal/childproc"
)

// TestFleetScript runs scripts/fleet.sh at a small size, as CI does: 8
// real agents with their synthetic plugins against one `stoker studio`,
// 200 jobs, and nothing lost or duplicated.
func TestFleetScript(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..", "..")
	cmd := exec.Command("bash", "scripts/fleet.sh")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "N=8", "M=200", "IDLE=2s", "FLEET_LOG="+filepath.Join(t.TempDir(), "fleet.log"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	t.Logf("scripts/fleet.sh (N=8 M=200):\n%s", out)
	if err != nil {
		t.Fatalf("scripts/fleet.sh: %v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if got, want := lines[len(lines)-1], "lost=0 duplicates=0 agents=8 jobs=200"; got != want {
		t.Errorf("last line %q, want %q", got, want)
	}
	for _, want := range []string{"agent+plugins RSS", "jobs per second", "series per agent", "heartbeat frame bytes", "cores over 2s", "load average"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the report lacks %q", want)
		}
	}
}

func TestReportVerdictLine(t *testing.T) {
	r := &Report{Agents: 2, Jobs: 5, Completed: 4, Lost: 1, Duplicates: 2, Elapsed: time.Second,
		AgentRSS: []int64{20 << 20, 22 << 20}, NodeRSS: []int64{40 << 20, 41 << 20}, JobsPerAgent: []int{2, 2}}
	var b bytes.Buffer
	r.Print(&b)
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if got, want := lines[len(lines)-1], "lost=1 duplicates=2 agents=2 jobs=5"; got != want {
		t.Errorf("last line %q, want %q", got, want)
	}
	if !strings.Contains(b.String(), "min 40.0 MiB, median 41.0 MiB, max 41.0 MiB, total 81.0 MiB") {
		t.Errorf("node RSS line missing:\n%s", b.String())
	}
}

func TestResidentBytes(t *testing.T) {
	n, err := childproc.RSS(os.Getpid())
	if err != nil || n < 1<<20 {
		t.Errorf("childproc.RSS(self) = %d, %v; want at least 1 MiB", n, err)
	}
	if _, err := childproc.RSS(-1); err == nil {
		t.Error("childproc.RSS(-1): no error")
	}
}

func TestStartNeedsItsParts(t *testing.T) {
	if _, err := Start(t.Context(), Config{}); err == nil || !strings.Contains(err.Error(), "required") {
		t.Errorf("Start with nothing: %v, want a clear error", err)
	}
}

// TestDescendants: a child of this process, and its child, are found.
func TestDescendants(t *testing.T) {
	cmd := exec.Command("sh", "-c", "cat; :") // sh waits on cat, which waits on stdin
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Wait()
	}()
	var ds []int
	for deadline := time.Now().Add(time.Minute); len(ds) < 2 && time.Now().Before(deadline); {
		ds = descendants(os.Getpid()) // sh forks cat in its own time
		time.Sleep(time.Millisecond)  // polling step: /proc has no event to wait on
	}
	if len(ds) < 2 || ds[0] != cmd.Process.Pid {
		t.Errorf("descendants = %v, want sh (%d) and its cat", ds, cmd.Process.Pid)
	}
}
