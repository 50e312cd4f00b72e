package monitoring

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// repoRoot is the repository's root, from this file's path.
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("no caller")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// tool finds a program from Debian's prometheus package.
func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found (scripts/setup-env.sh installs Debian's prometheus package): %v", name, err)
	}
	return p
}

// TestAlertRules runs promtool on the alert rules: they load, and their
// unit tests pass (among them, that StokerJobsFailing fires on a failing
// node, and that the expression docs/operations.md used to give never
// does).
func TestAlertRules(t *testing.T) {
	promtool := tool(t, "promtool")
	dir := filepath.Join(repoRoot(t), "deploy", "prometheus")
	for _, args := range [][]string{
		{"check", "rules", "stoker-alerts.yml"},
		{"test", "rules", "stoker-alerts.test.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		} else {
			t.Logf("promtool %v:\n%s", args, out)
		}
	}
}
