package releasetest

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
)

// maxExposure is the most systemd-analyze security may rate a unit.
const maxExposure = 2.0

// TestUnitHardening rates every unit with systemd-analyze security offline
// (no systemd needs to run) and wants each at maxExposure or better.
func TestUnitHardening(t *testing.T) {
	units, _ := filepath.Glob("../../../scripts/systemd/*.service")
	if len(units) == 0 {
		t.Fatal("no units in scripts/systemd")
	}
	overall := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`)
	for _, u := range units {
		out, _ := exec.Command("systemd-analyze", "security", "--offline=true", "--no-pager", u).CombinedOutput()
		m := overall.FindSubmatch(out)
		if m == nil {
			t.Errorf("%s: no exposure level in:\n%s", u, out)
			continue
		}
		score, _ := strconv.ParseFloat(string(m[1]), 64)
		t.Logf("%s: exposure %.1f", filepath.Base(u), score)
		if score > maxExposure {
			t.Errorf("%s: exposure %.1f, want %.1f or better:\n%s", filepath.Base(u), score, maxExposure, out)
		}
	}
}
