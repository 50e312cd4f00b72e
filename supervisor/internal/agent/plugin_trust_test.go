package agent_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stokerhq/stoker/supervisor/internal/devstudio"
)

// TestPluginsGetNoSecretsNorDescriptors: the agent's token and its other
// settings never reach a plugin's environment, settings meant for plugins
// do, and a descriptor the agent holds without close-on-exec (as one
// inherited from its parent would be) is not the plugin's.
func TestPluginsGetNoSecretsNorDescriptors(t *testing.T) {
	t.Setenv("STOKER_AUTH_TOKEN", "agent-secret-token")
	t.Setenv("STOKER_SDCPP_THREADS", "3")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "not-for-plugins")
	marker := filepath.Join(t.TempDir(), "agent-held-descriptor")
	f, err := os.Create(marker)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, _, errno := syscall.Syscall(syscall.SYS_FCNTL, f.Fd(), syscall.F_SETFD, 0); errno != 0 {
		t.Fatal(errno)
	}
	s := startCrashStack(t, crashOptions{})
	if v := s.run(t, "faults-llm", "ok"); v.Status != devstudio.JobCompleted {
		t.Fatalf("job: %s %q", v.Status, v.Error)
	}
	pid := strconv.Itoa(s.faultsStatus(t).Pid)
	b, err := os.ReadFile("/proc/" + pid + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	env := "\x00" + string(b)
	for _, leak := range []string{"STOKER_AUTH_TOKEN=", "AWS_SECRET_ACCESS_KEY=", "STOKER_API_BASE_URL=", "STOKER_STATE_DIR="} {
		if strings.Contains(env, "\x00"+leak) {
			t.Errorf("the plugin's environment has %s…", leak)
		}
	}
	for _, want := range []string{"STOKER_SDCPP_THREADS=3", "STOKER_PLUGIN_LOG_LEVEL=info", "PATH="} {
		if !strings.Contains(env, "\x00"+want) {
			t.Errorf("the plugin's environment lacks %s", want)
		}
	}
	fdDir := "/proc/" + pid + "/fd"
	ents, err := os.ReadDir(fdDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if target, err := os.Readlink(filepath.Join(fdDir, e.Name())); err == nil && target == marker {
			t.Errorf("the plugin holds the agent's descriptor as its fd %s", e.Name())
		}
	}
}
