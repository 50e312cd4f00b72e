package agent_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/supervisor/internal/devstudio"
)

// unitLines returns the settings of a systemd unit file (no comments or
// blank lines), in order.
func unitLines(tb testing.TB, name string) []string {
	tb.Helper()
	f, err := os.Open(filepath.Join("..", "..", "..", "scripts", "systemd", name))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

// instanceKeys are the settings in which stoker@.service may differ from
// stoker.service.
var instanceKeys = []string{"Description=", "Environment=", "ExecStart=", "StateDirectory="}

// TestSystemdUnitsAgree keeps the per-GPU template in step with the node's
// unit: apart from its instance settings, the same lines in the same order.
func TestSystemdUnitsAgree(t *testing.T) {
	strip := func(lines []string) []string {
		return slices.DeleteFunc(lines, func(l string) bool {
			return slices.ContainsFunc(instanceKeys, func(k string) bool { return strings.HasPrefix(l, k) })
		})
	}
	node, tmpl := strip(unitLines(t, "stoker.service")), strip(unitLines(t, "stoker@.service"))
	if !slices.Equal(node, tmpl) {
		t.Errorf("stoker@.service differs from stoker.service beyond %v:\nstoker.service:  %q\nstoker@.service: %q", instanceKeys, node, tmpl)
	}
}

// TestSystemdTemplateInstance runs `stoker agent` as instance 1 of
// stoker@.service would: the template's own Environment= and ExecStart=
// lines, with its paths moved into a temporary root. The agent's plugins
// (a real faults plugin process) get GPU 1 as STOKER_PLUGIN_GPU and in the
// device libraries' variables, and the instance's state lands in its own
// directory.
func TestSystemdTemplateInstance(t *testing.T) {
	crashBinaries(t)
	root := t.TempDir()
	move := strings.NewReplacer(
		"%i", "1",
		"/opt/stoker/bin/", binDir+"/",
		"/var/lib/stoker/", root+"/var/lib/stoker/",
		"/etc/stoker/", root+"/etc/stoker/",
	)
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + root}
	var argv []string
	for _, line := range unitLines(t, "stoker@.service") {
		switch {
		case strings.HasPrefix(line, "Environment="):
			env = append(env, move.Replace(strings.TrimPrefix(line, "Environment=")))
		case strings.HasPrefix(line, "ExecStart="):
			argv = strings.Fields(move.Replace(strings.TrimPrefix(line, "ExecStart=")))
		}
	}
	if len(argv) < 4 || argv[len(argv)-2] != "-config" {
		t.Fatalf("ExecStart %q: want stoker agent -config <file>", argv)
	}

	log := hclog.NewInterceptLogger(&hclog.LoggerOptions{Name: "studio", Level: hclog.Warn, Output: os.Stderr})
	cat := devstudio.DefaultCatalog()
	addEntry(t, cat, "faults-llm", "faults")
	srv, err := devstudio.New(devstudio.Config{Addr: "127.0.0.1:0", AutoApprove: true, Catalog: cat, MaxAttempts: 1, ResultsDir: t.TempDir(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })

	// The instance's config, as the template's install loop writes it
	// (listen off here, so that parallel tests need no free port).
	confFile := argv[len(argv)-1]
	if err := os.MkdirAll(filepath.Dir(confFile), 0o755); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf("api_base_url = %q\nplugin_dir = %q\nlisten = \"\"\nmachine_name = \"node-gpu1\"\nplugin_env = [\"STOKER_FAULTS_*\"]\n",
		srv.URL(), crashPluginDir(t))
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"gpu1", "models"} { // systemd's StateDirectory=
		if err := os.MkdirAll(filepath.Join(root, "var", "lib", "stoker", d), 0o700); err != nil {
			t.Fatal(err)
		}
	}

	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("stoker agent after SIGTERM: %v", err)
			}
		case <-time.After(60 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("stoker agent did not stop within 60s of SIGTERM")
		}
	})

	s := &crashStack{studio: srv}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := srv.WaitWorker(ctx, s.workerID(t, ctx), func(v devstudio.WorkerView) bool { return v.Connected && v.Capabilities != nil }); err != nil {
		t.Fatalf("instance 1 never connected: %v", err)
	}
	for _, name := range append(plugins.GPUVisibleDevices, plugins.EnvGPU) {
		if v, set := s.pluginEnvValue(t, name); !set || v != "1" {
			t.Errorf("instance 1's plugin has %s = %q (set %v), want 1", name, v, set)
		}
	}
	if ws := srv.Workers(); len(ws) != 1 || ws[0].Capabilities == nil || ws[0].Capabilities.MachineName != "node-gpu1" {
		t.Errorf("workers %+v: want one, node-gpu1 (the instance's config)", ws)
	}
	entries, err := os.ReadDir(filepath.Join(root, "var", "lib", "stoker", "gpu1"))
	if err != nil || len(entries) == 0 {
		t.Errorf("instance state dir: %v, %d entries: want the agent's identity there", err, len(entries))
	}
}
