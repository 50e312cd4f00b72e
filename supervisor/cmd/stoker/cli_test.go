package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stokerhq/stoker/supervisor/internal/config"
	"github.com/stokerhq/stoker/supervisor/internal/models"
)

// runCmd runs `stoker args...` and returns its stdout, stderr and error.
func runCmd(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, stdio{out: &out, err: &errOut})
	return out.String(), errOut.String(), err
}

// TestExtraArgumentsRefused: a config file given without -config, or any
// other stray argument, stops the command with a usage error that says
// what to do, instead of running on the defaults.
func TestExtraArgumentsRefused(t *testing.T) {
	t.Setenv("STOKER_STATE_DIR", t.TempDir())
	for _, args := range [][]string{
		{"agent", "/etc/stoker/stoker.toml"},
		{"agent", "-dev", "/etc/stoker/stoker.toml"},
		{"register", "stoker.toml"},
		{"config", "validate", "stoker.toml"},
		{"config", "print", "stoker.toml", "-set", "log_level=debug"},
		{"models", "list", "stoker.toml"},
		{"ps", "stoker.toml"},
	} {
		_, stderr, err := runCmd(t, args...)
		if !errors.Is(err, errUsage) {
			t.Errorf("%q: err = %v, want a usage error", args, err)
			continue
		}
		if !strings.Contains(stderr, "unexpected argument") || !strings.Contains(stderr, "-config FILE") || !strings.Contains(stderr, "usage: stoker") {
			t.Errorf("%q: stderr does not explain:\n%s", args, stderr)
		}
	}
	_, stderr, _ := runCmd(t, "config", "print", "stoker.toml", "-set", "log_level=debug")
	if !strings.Contains(stderr, `"-set" was not read as a flag`) {
		t.Errorf("a flag after an argument is not pointed out:\n%s", stderr)
	}
	for _, args := range [][]string{{"studio", "x"}, {"version", "x"}, {"nosuch"}, {}, {"models", "nosuch"}, {"completion", "fish"}, {"agent", "-nosuch"}} {
		if _, _, err := runCmd(t, args...); !errors.Is(err, errUsage) {
			t.Errorf("%q: err = %v, want a usage error", args, err)
		}
	}
}

// TestHelpEveryCommand: -h on every command and subcommand prints its usage
// on stdout and ends as help (exit 0), without doing anything.
func TestHelpEveryCommand(t *testing.T) {
	t.Setenv("STOKER_STATE_DIR", t.TempDir())
	cmds := [][]string{{"-h"}, {"help"}}
	for _, c := range commandTree {
		cmds = append(cmds, []string{c.name})
		for _, sub := range c.subs {
			cmds = append(cmds, []string{c.name, sub})
		}
	}
	for _, c := range cmds {
		args := c
		if c[0] != "-h" && c[0] != "help" {
			args = append(append([]string{}, c...), "-h")
		}
		if c[0] == "completion" && len(c) == 2 {
			continue // "completion bash" prints a script; "completion -h" is covered
		}
		stdout, stderr, err := runCmd(t, args...)
		if !errors.Is(err, errHelp) {
			t.Errorf("%q: err = %v, want help", args, err)
		}
		if !strings.Contains(stdout, "usage: stoker") || stderr != "" {
			t.Errorf("%q: stdout %q, stderr %q: want the usage on stdout only", args, stdout, stderr)
		}
	}
}

// TestMainExitCodes runs the built command: -h exits 0, a stray argument 2,
// a bad config 1.
func TestMainExitCodes(t *testing.T) {
	exe := filepath.Join(t.TempDir(), "stoker")
	if b, err := exec.Command("go", "build", "-o", exe, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, b)
	}
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"agent", "-h"}, 0},
		{[]string{"models", "pull", "-h"}, 0},
		{[]string{"agent", "/etc/stoker/stoker.toml"}, 2},
		{[]string{"config", "validate", "-set", "log_level=loud"}, 1},
		{[]string{"config", "validate"}, 0},
	} {
		cmd := exec.Command(exe, tc.args...)
		cmd.Env = append(os.Environ(), "STOKER_STATE_DIR="+t.TempDir())
		out, _ := cmd.CombinedOutput()
		if got := cmd.ProcessState.ExitCode(); got != tc.code {
			t.Errorf("stoker %q exited %d, want %d:\n%s", tc.args, got, tc.code, out)
		}
	}
}

// TestIgnoredEnv: STOKER_ variables that are neither settings nor passed to
// plugins are named; settings, the bundled engines' variables and
// plugin_env's names are not.
func TestIgnoredEnv(t *testing.T) {
	t.Setenv("STOKER_STATE_DIR", t.TempDir())
	t.Setenv("STOKER_LOGLEVEL", "debug")
	t.Setenv("STOKER_MYENGINE_X", "1")
	t.Setenv("STOKER_LLAMA_THREADS", "2")
	t.Setenv("STOKER_VRAM_THRESHOLD_GB", "8")
	t.Setenv("STOKER_TYPO", "1")
	_, stderr, err := runCmd(t, "config", "validate", "-set", "plugin_env=STOKER_MYENGINE_*")
	if err != nil {
		t.Fatal(err)
	}
	// The test's own environment may hold other STOKER_ variables (the
	// scripts' and other tests'); these two must be named.
	if !strings.Contains(stderr, "STOKER_LOGLEVEL, ") || !strings.Contains(stderr, "STOKER_TYPO") || !strings.Contains(stderr, "are not settings") {
		t.Errorf("warning: %q", stderr)
	}
	cfg, err := config.Load("", []string{"STOKER_STATE_DIR=/tmp/st", "STOKER_PLUGIN_ENV=STOKER_MYENGINE_*"})
	if err != nil {
		t.Fatal(err)
	}
	got := ignoredEnv([]string{"STOKER_STATE_DIR=/tmp/st", "STOKER_LOGLEVEL=debug", "STOKER_MYENGINE_X=1", "STOKER_LLAMA_THREADS=2",
		"STOKER_ENGINES_DIR=/x", "STOKER_TYPO=1", "STOKER_TYPO=2", "OTHER=1"}, cfg)
	if strings.Join(got, ",") != "STOKER_LOGLEVEL,STOKER_TYPO" {
		t.Errorf("ignoredEnv = %v, want STOKER_LOGLEVEL and STOKER_TYPO", got)
	}
	for _, quiet := range []string{"STOKER_MYENGINE_X", "STOKER_LLAMA_THREADS", "STOKER_VRAM_THRESHOLD_GB", "STOKER_STATE_DIR"} {
		if strings.Contains(stderr, quiet) {
			t.Errorf("%s warned about: %q", quiet, stderr)
		}
	}
}

// TestConfigPrint: each value with its origin, the token redacted; a bad
// value fails validate with the key named.
func TestConfigPrint(t *testing.T) {
	state := t.TempDir()
	t.Setenv("STOKER_STATE_DIR", state)
	t.Setenv("STOKER_DRAIN_TIMEOUT", "2m")
	path := filepath.Join(t.TempDir(), "stoker.toml")
	os.WriteFile(path, []byte("worker_id = \"w-1\"\nauth_token = \"tok-very-secret\"\nlog_level = \"debug\"\n"), 0o600)
	stdout, _, err := runCmd(t, "config", "print", "-config", path, "-set", "vram_threshold_gb=20")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`worker_id = "w-1"`, `auth_token = "(redacted)"`, `log_level = "debug"`, "# file",
		`drain_timeout = "2m0s"`, "# env", `vram_threshold_gb = 20`, "# flag", `api_base_url = "https://studio.minis.gg/"`, "# default",
		`state_dir = "` + state + `"`,
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("print lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "tok-very-secret") {
		t.Errorf("the token printed:\n%s", stdout)
	}
	_, _, err = runCmd(t, "config", "validate", "-config", path, "-set", "log_level=loud")
	if err == nil || !strings.Contains(err.Error(), "log_level") {
		t.Errorf("validate of a bad log_level: %v", err)
	}
	stdout, _, err = runCmd(t, "config", "validate", "-config", path)
	if err != nil || !strings.Contains(stdout, "config ok") {
		t.Errorf("validate: %v %q", err, stdout)
	}
}

// TestCompletionBash sources the bash script and asks it, as bash's
// completion would, for the words after partial command lines.
func TestCompletionBash(t *testing.T) {
	script, _, err := runCmd(t, "completion", "bash")
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "stoker.bash")
	os.WriteFile(f, []byte(script), 0o600)
	for line, want := range map[string]string{
		"stoker mo":              "models",
		"stoker models p":        "prune pull",
		"stoker models pull -l":  "-list",
		"stoker agent -c":        "-catalog -config",
		"stoker config ":         "print validate",
		"stoker completion ":     "bash zsh",
		"stoker plugin check -m": "-model -model-file",
	} {
		words := strings.Split(line, " ")
		prog := fmt.Sprintf(`source %q; COMP_WORDS=(%s); COMP_CWORD=%d; _stoker; printf '%%s\n' "${COMPREPLY[@]}" | sort | tr '\n' ' '`,
			f, quoteWords(words), len(words)-1)
		out, err := exec.Command("bash", "-c", prog).CombinedOutput()
		if err != nil {
			t.Fatalf("%q: %v\n%s", line, err, out)
		}
		if got := strings.TrimSpace(string(out)); got != want {
			t.Errorf("%q completes to %q, want %q", line, got, want)
		}
	}
}

// TestCompletionZsh runs the zsh function with compadd and _files
// standing in for zsh's completion system, which only runs in a terminal.
func TestCompletionZsh(t *testing.T) {
	script, _, err := runCmd(t, "completion", "zsh")
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "_stoker")
	os.WriteFile(f, []byte(script), 0o600)
	if out, err := exec.Command("zsh", "-n", f).CombinedOutput(); err != nil {
		t.Fatalf("zsh -n: %v\n%s", err, out)
	}
	for line, want := range map[string]string{
		"stoker models ":       "list prune pull",
		"stoker models pull -": "-config -list -set",
		"stoker ps -":          "-addr -config -json -set",
		"stoker models pull x": "(files)",
	} {
		words := strings.Split(line, " ")
		prog := fmt.Sprintf(`compdef() { :; }; compadd() { shift; print -r -- "$@"; }; _files() { print '(files)'; }; source %q; words=(%s); CURRENT=%d; _stoker`,
			f, quoteWords(words), len(words))
		out, err := exec.Command("zsh", "-f", "-c", prog).CombinedOutput()
		if err != nil {
			t.Fatalf("%q: %v\n%s", line, err, out)
		}
		if got := strings.TrimSpace(string(out)); got != want {
			t.Errorf("%q completes to %q, want %q", line, got, want)
		}
	}
}

func quoteWords(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = "'" + w + "'"
	}
	return strings.Join(q, " ")
}

// TestModelsPull: pull downloads a model list's files from a real HTTP
// server into the cache through the model store, verifies their SHA-256,
// reports progress in plain lines off a terminal; a wrong checksum fails
// that model by name and keeps nothing; an unknown model id stops before
// any download.
func TestModelsPull(t *testing.T) {
	body := bytes.Repeat([]byte("stoker model "), 100_000)
	sum := sha256.Sum256(body)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.Write(body)
	}))
	defer srv.Close()
	state := t.TempDir()
	t.Setenv("STOKER_STATE_DIR", state)
	list := filepath.Join(t.TempDir(), "models.json")
	writeList := func(hexsum string) {
		os.WriteFile(list, []byte(fmt.Sprintf(`{
  "tiny": {"engine": "llama-cpp", "files": [{"role": "model", "url": %q, "filename": "tiny.gguf", "sha256": %q}],
           "cliDefaults": {"cfgScale": 1, "steps": 1, "width": 1, "height": 1}, "vramGbEstimate": 1}
}`, srv.URL+"/tiny.gguf", hexsum)), 0o600)
	}
	writeList(strings.Repeat("0", 64))
	stdout, stderr, err := runCmd(t, "models", "pull", "-list", list, "-set", "fetch_allow=127.0.0.0/8")
	if err == nil || !strings.Contains(err.Error(), "tiny") || !strings.Contains(stderr, "tiny:") {
		t.Fatalf("a wrong checksum: err %v\nstdout %s\nstderr %s", err, stdout, stderr)
	}
	if _, err := os.Stat(filepath.Join(state, "models", "tiny", "tiny.gguf")); err == nil {
		t.Errorf("a file that failed its checksum is in the cache")
	}
	writeList(hex.EncodeToString(sum[:]))
	if _, _, err := runCmd(t, "models", "pull", "-list", list, "-set", "fetch_allow=127.0.0.0/8", "nosuch"); err == nil || !strings.Contains(err.Error(), `"nosuch" is not in`) {
		t.Errorf("an unknown model: %v", err)
	}
	stdout, stderr, err = runCmd(t, "models", "pull", "-list", list, "-set", "fetch_allow=127.0.0.0/8", "tiny")
	if err != nil {
		t.Fatalf("pull: %v\n%s", err, stderr)
	}
	t.Logf("stdout:\n%sstderr:\n%s", stdout, stderr)
	if !strings.Contains(stderr, "pulling tiny") || !strings.Contains(stderr, "tiny.gguf done") || strings.Contains(stderr, "\r") {
		t.Errorf("progress lines: %q", stderr)
	}
	got, err := os.ReadFile(filepath.Join(state, "models", "tiny", "tiny.gguf"))
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("cached file: %v (%d bytes)", err, len(got))
	}
	stdout, _, err = runCmd(t, "models", "list")
	if err != nil || !strings.Contains(stdout, "tiny.gguf") {
		t.Errorf("models list after pull: %v\n%s", err, stdout)
	}
	// Pulled again: found in the cache, nothing downloaded.
	if _, _, err := runCmd(t, "models", "pull", "-list", list, "-set", "fetch_allow=127.0.0.0/8"); err != nil {
		t.Errorf("second pull: %v", err)
	}
}

// TestProgressBar: on a terminal the bar is redrawn in place.
func TestProgressBar(t *testing.T) {
	var b bytes.Buffer
	p := newProgressWriter(&b, true)
	p.start("m")
	p.update(modelsProgress("f.gguf", 50, 100, false))
	p.update(modelsProgress("f.gguf", 100, 100, true))
	out := b.String()
	if !strings.Contains(out, "\r\x1b[Km f.gguf [###############...............]  50%") || !strings.HasSuffix(out, "\n") {
		t.Errorf("bar: %q", out)
	}
}

func modelsProgress(file string, done, total int64, final bool) models.Progress {
	return models.Progress{Model: "m", File: file, Done: done, Total: total, Rate: 1000, Final: final}
}
