//go:build llamacpp || whispercpp || sdcpp

package main

// `stoker plugin check` on the real engine plugins, each built with the tag
// that links its engine (plugin_<engine>_test.go) and checked on its tiny
// model, and on the Python example plugin. scripts/install-engines.sh
// installs what they need; scripts/test.sh runs them with every tag.

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// writeModel writes a tiny model with write into the test's temp dir.
func writeModel(t *testing.T, name string, write func(io.Writer) error) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	if err := write(w); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// checkEngine checks the engine plugin built from pkg with tag on the tiny
// model write writes: every check passes, the sample job of kind a real
// success.
func checkEngine(t *testing.T, pkg, tag, modelName string, write func(io.Writer) error, kind, okSays string) {
	t.Helper()
	bin := built(t, goPlugin(pkg, tag))
	model := writeModel(t, modelName, write)
	out, err := pluginCheck(t, "-model", "tiny", "-model-file", "model="+model, bin)
	wantConforms(t, out, err, "run "+kind)
	want := "PASS run " + kind + ": ok: " + okSays
	if !containsLinePrefix(out, want) {
		t.Errorf("no line %q…: the sample job did not succeed on the tiny model", want)
	}
}

func containsLinePrefix(out, prefix string) bool {
	for l := range strings.SplitSeq(out, "\n") {
		if len(l) >= len(prefix) && l[:len(prefix)] == prefix {
			return true
		}
	}
	return false
}

// espeakPlugin builds the Python example plugin with its build script
// (the one scripts/build.sh uses), once per test binary run.
var espeakPlugin = sync.OnceValues(func() (string, error) {
	out := filepath.Join(pluginBinDir, "espeak-tts-plugin")
	b, err := exec.Command("bash", "../../../espeak-tts-plugin/build.sh", out).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("espeak-tts-plugin/build.sh (scripts/install-engines.sh installs what it needs): %w\n%s", err, b)
	}
	return out, nil
})

// TestPluginCheckPython: the Python plugin, which speaks go-plugin's
// protocol without go-plugin, conforms, and its sample job is real speech.
func TestPluginCheckPython(t *testing.T) {
	t.Parallel()
	out, err := pluginCheck(t, built(t, espeakPlugin))
	wantConforms(t, out, err, "run audio_tts")
	if !containsLinePrefix(out, "PASS run audio_tts: ok: ") || !containsLinePrefix(out, "PASS cancel: ") {
		t.Errorf("the sample audio_tts job did not succeed")
	}
}
