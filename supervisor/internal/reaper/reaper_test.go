package reaper_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stokerhq/stoker/supervisor/internal/reaper"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// leftover starts a process in its own group that lives until killed, as
// a plugin would; the test ends it if the reaper did not. exited is closed
// once it is gone.
func leftover(t *testing.T) (cmd *exec.Cmd, exited <-chan struct{}) {
	t.Helper()
	cmd = exec.Command("sleep", "300")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	})
	return cmd, done
}

func TestReapKillsRecordedLeftovers(t *testing.T) {
	dir := t.TempDir()
	cmd, exited := leftover(t)
	first, err := reaper.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	first.Record(cmd.Process.Pid)
	// A later run finds the record and the process.
	second, err := reaper.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	killed, err := second.Reap()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(killed, []int{cmd.Process.Pid}) {
		t.Errorf("killed %v, want [%d]", killed, cmd.Process.Pid)
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Errorf("leftover %d still runs", cmd.Process.Pid)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("records left after Reap: %v", left)
	}
}

func TestReapSparesRecycledPidsAndSurvivesBadRecords(t *testing.T) {
	dir := t.TempDir()
	cmd, _ := leftover(t)
	id, err := reaper.Identify(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	pid := strconv.Itoa(cmd.Process.Pid)
	records := map[string]string{
		// The pid is alive but started at another time: recycled.
		pid: pid + " " + strconv.FormatUint(id.StartTime+1, 10) + " " + id.BootID + "\n",
		// Another boot.
		"1": "1 1 other-boot\n",
		// Hostile and malformed records.
		"../escape":  "1 2 x",
		"not-a-pid":  "x",
		"007":        "7 1 " + id.BootID,
		"2147483000": "garbage",
	}
	for name, body := range records {
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(name)), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r, err := reaper.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	killed, err := r.Reap()
	if len(killed) != 0 {
		t.Errorf("killed %v, want none", killed)
	}
	if err == nil {
		t.Errorf("Reap reported no error for the malformed records")
	}
	if id2, err := reaper.Identify(cmd.Process.Pid); err != nil || id2 != id {
		t.Errorf("the process with a recycled pid was harmed: %v %v", id2, err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("records left after Reap: %v", left)
	}
}

func TestForget(t *testing.T) {
	dir := t.TempDir()
	r, err := reaper.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Record(os.Getpid())
	if _, err := os.Stat(filepath.Join(dir, strconv.Itoa(os.Getpid()))); err != nil {
		t.Fatalf("no record written: %v", err)
	}
	r.Forget(os.Getpid())
	r.Forget(os.Getpid()) // twice is fine
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("records left after Forget: %v", left)
	}
	// Our own pid is never reaped, even if recorded.
	r.Record(os.Getpid())
	if killed, err := r.Reap(); len(killed) != 0 || err != nil {
		t.Errorf("Reap of our own record = %v, %v; want nothing killed", killed, err)
	}
}
