package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stokerhq/stoker/faults-plugin/faults"
)

// pluginBinDir holds the plugins the tests build, once per test binary run
// (TestMain removes it).
var pluginBinDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "stoker-cmd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pluginBinDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// goPlugin returns a builder of the Go plugin at pkg (relative to the
// module) with the build tags tags, once per test binary run.
func goPlugin(pkg, tags string) func() (string, error) {
	return sync.OnceValues(func() (string, error) {
		out := filepath.Join(pluginBinDir, filepath.Base(pkg))
		args := []string{"build", "-o", out}
		if tags != "" {
			args = append(args, "-tags", tags)
		}
		b, err := exec.Command("go", append(args, "github.com/stokerhq/stoker/"+pkg)...).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("build %s (tags %q): %w\n%s", pkg, tags, err, b)
		}
		return out, nil
	})
}

var (
	syntheticPlugin = goPlugin("synthetic-plugin", "")
	faultsPlugin    = goPlugin("faults-plugin", "")
)

func built(t *testing.T, build func() (string, error)) string {
	t.Helper()
	path, err := build()
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// pluginCheck runs `stoker plugin check args...` and returns its stdout and
// its error.
func pluginCheck(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), append([]string{"plugin", "check"}, args...), stdio{out: &out, err: &errOut})
	if errOut.Len() > 0 {
		t.Logf("stderr:\n%s", errOut.String())
	}
	return out.String(), err
}

// wantConforms fails t unless the report of `stoker plugin check` says
// every check passed, with the checks names among them.
func wantConforms(t *testing.T, out string, err error, names ...string) {
	t.Helper()
	t.Logf("report:\n%s", out)
	if err != nil {
		t.Errorf("plugin check: %v, want success", err)
	}
	if strings.Contains(out, "FAIL ") || !strings.Contains(out, "checks passed") {
		t.Errorf("the report has a failure or no verdict")
	}
	for _, n := range append([]string{"handshake", "describe", "ready", "unsupported kind", "bad request", "cancel", "alive", "shutdown", "stdout"}, names...) {
		if !strings.Contains(out, "PASS "+n+": ") {
			t.Errorf("no PASS line for %q", n)
		}
	}
}

// TestPluginCheckSynthetic: the synthetic plugin conforms, every kind run.
func TestPluginCheckSynthetic(t *testing.T) {
	t.Parallel()
	out, err := pluginCheck(t, built(t, syntheticPlugin))
	wantConforms(t, out, err, "run image", "run llm", "run audio_stt", "run audio_tts", "run video")
}

// TestPluginCheckFaults: `stoker plugin check` fails each lying or broken
// mode of the faults plugin with a FAIL line that names what is wrong, and
// passes the plugin when it behaves.
func TestPluginCheckFaults(t *testing.T) {
	bin := built(t, faultsPlugin)
	t.Run("honest", func(t *testing.T) {
		t.Parallel()
		out, err := pluginCheck(t, bin)
		wantConforms(t, out, err, "run image", "run llm")
	})
	for _, c := range []struct {
		env   string   // the fault
		flags []string // besides -env
		check string   // the check that must fail
		says  string   // in its reason
	}{
		{env: faults.EnvStart + "=garbage", check: "handshake", says: "this is not the go-plugin handshake line"},
		{env: faults.EnvStart + "=exit", check: "handshake", says: `its stderr ended "faults: exiting before serving, as asked"`},
		{env: faults.EnvStart + "=slow=1m", flags: []string{"-start-timeout", "300ms"}, check: "handshake", says: "timeout while waiting for plugin to start"},
		{env: faults.EnvStart + "=linger", check: "shutdown", says: "did not exit on GRPCController.Shutdown and was killed"},
		{env: faults.EnvDescribe + "=wrong-contract", check: "describe", says: "contract version 99, want 1"},
		{env: faults.EnvDescribe + "=bogus-kinds", check: "describe", says: `unknown task kind "teleport"`},
		{env: faults.EnvDescribe + "=bogus-kinds", check: "unsupported kind", says: "which the engine does not serve, succeeded"},
		{env: faults.EnvDescribe + "=no-engines", check: "describe", says: "no engine ids"},
		{env: faults.EnvDescribe + "=hang", flags: []string{"-job-timeout", "300ms"}, check: "describe", says: "Describe did not answer within 300ms"},
		{env: faults.EnvDescribe + "=huge", check: "describe", says: "the answer is over the limit of 262144 bytes"},
		{env: faults.EnvDescribe + "=many-models", check: "describe", says: "2000 models for kind"},
		{env: faults.EnvJob + "=stdout-garbage", check: "stdout", says: "bytes on stdout after the handshake line"},
		{env: faults.EnvJob + "=break-transport", check: "run image", says: "transport broke mid-job while the process lived on"},
		{env: faults.EnvJob + "=break-transport", check: "alive", says: "the process exited during the checks"},
		{env: faults.EnvJob + "=lie-size", check: "run image", says: "plugin broke the engine contract"},
		{env: faults.EnvJob + "=raw-output=5MiB", check: "run image", says: "a message over the limit"},
		{env: faults.EnvJob + "=segv", check: "run image", says: "crashed: plugin faults-plugin crashed mid-job"},
		{env: faults.EnvJob + "=hang", flags: []string{"-job-timeout", "300ms"}, check: "run image", says: "the job did not finish within 300ms"},
	} {
		t.Run(c.env+"/"+c.check, func(t *testing.T) {
			t.Parallel()
			out, err := pluginCheck(t, append(append([]string{"-env", c.env}, c.flags...), bin)...)
			t.Logf("report:\n%s", out)
			if err == nil || !strings.Contains(err.Error(), "does not conform") {
				t.Errorf("plugin check: %v, want a failure", err)
			}
			var line string
			for l := range strings.SplitSeq(out, "\n") {
				if strings.HasPrefix(l, "FAIL "+c.check+": ") {
					line = l
				}
			}
			if !strings.Contains(line, c.says) {
				t.Errorf("FAIL %s line %q does not say %q", c.check, line, c.says)
			}
			if !strings.Contains(out, "checks failed: the plugin does not conform") {
				t.Errorf("no verdict line")
			}
		})
	}
}

// TestPluginCheckUsage: a malformed command line is refused before any
// plugin runs.
func TestPluginCheckUsage(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"-model-file", "model", "x"},
		{"-env", "=x", "x"},
	} {
		if _, err := pluginCheck(t, args...); err == nil {
			t.Errorf("plugin check %q succeeded", args)
		}
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"plugin"}, stdio{out: &out, err: &out}); err == nil {
		t.Errorf("plugin without check succeeded")
	}
}
