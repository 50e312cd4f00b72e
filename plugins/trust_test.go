package plugins_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stokerhq/stoker/plugins"
)

// Plugin trust: a plugin runs only from a path nobody else can change, the
// bytes hashed for a pin are the bytes that run, and a plugin gets neither
// the supervisor's environment nor its descriptors.

// copyExe copies the test binary (which serves testEngine when launched)
// to dir/name with mode, and returns its path.
func copyExe(t *testing.T, dir, name string, mode os.FileMode) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	path := filepath.Join(dir, name)
	dst, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o700)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// launchAt launches the plugin at path serving testEngine, with env added.
func launchAt(path string, env ...string) (*plugins.Plugin, error) {
	return plugins.Launch(plugins.LaunchConfig{Path: path, Env: append([]string{envServe + "=1"}, env...)})
}

func TestLaunchRefusesPathsOthersCanChange(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, root string) string // returns the plugin path
	}{
		{"plugin writable by group", func(t *testing.T, root string) string {
			return copyExe(t, root, "x-plugin", 0o775)
		}},
		{"plugin dir writable by others", func(t *testing.T, root string) string {
			dir := filepath.Join(root, "bin")
			mkdir(t, dir, 0o757)
			return copyExe(t, dir, "x-plugin", 0o755)
		}},
		{"a parent writable by others, not sticky", func(t *testing.T, root string) string {
			dir := filepath.Join(root, "shared", "bin")
			mkdir(t, filepath.Dir(dir), 0o777)
			mkdir(t, dir, 0o755)
			return copyExe(t, dir, "x-plugin", 0o755)
		}},
		{"plugin is a symbolic link", func(t *testing.T, root string) string {
			real := copyExe(t, root, "real", 0o755)
			link := filepath.Join(root, "x-plugin")
			if err := os.Symlink(real, link); err != nil {
				t.Fatal(err)
			}
			return link
		}},
		{"plugin dir is a symbolic link", func(t *testing.T, root string) string {
			dir := filepath.Join(root, "real")
			mkdir(t, dir, 0o755)
			copyExe(t, dir, "x-plugin", 0o755)
			if err := os.Symlink(dir, filepath.Join(root, "bin")); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(root, "bin", "x-plugin")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.setup(t, t.TempDir())
			p, err := launchAt(path)
			if err == nil {
				p.Kill()
				t.Fatalf("Launch(%s) started it; want a refusal", path)
			}
			if !errors.Is(err, plugins.ErrUntrusted) {
				t.Errorf("Launch: %v; want an error wrapping ErrUntrusted", err)
			}
			if err := plugins.CheckPath(path); !errors.Is(err, plugins.ErrUntrusted) {
				t.Errorf("CheckPath: %v; want an error wrapping ErrUntrusted", err)
			}
		})
	}
	t.Run("under a sticky world-writable parent", func(t *testing.T) {
		shared := filepath.Join(t.TempDir(), "shared")
		mkdir(t, shared, os.ModeSticky|0o777)
		dir := filepath.Join(shared, "mine")
		mkdir(t, dir, 0o755)
		p, err := launchAt(copyExe(t, dir, "x-plugin", 0o755))
		if err != nil {
			t.Fatalf("Launch: %v; a sticky parent (as /tmp) cannot have our entries swapped", err)
		}
		p.Kill()
	})
}

func mkdir(t *testing.T, dir string, mode os.FileMode) {
	t.Helper()
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
}

// TestPinnedBytesAreTheBytesRun: the file at the plugin's path is replaced
// between the pin check and the exec; what runs is still the file that was
// checked.
func TestPinnedBytesAreTheBytesRun(t *testing.T) {
	dir := t.TempDir()
	path := copyExe(t, dir, "x-plugin", 0o755)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	impostor := filepath.Join(dir, "impostor")
	if err := os.WriteFile(impostor, []byte("#!/bin/sh\necho not the pinned plugin\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	plugins.SetAfterVerify(t, func(p string) {
		if err := os.Rename(impostor, p); err != nil {
			t.Errorf("swap: %v", err)
		}
	})
	p, err := plugins.Launch(plugins.LaunchConfig{Path: path, Env: []string{envServe + "=1"}, SHA256: hex.EncodeToString(sum[:])})
	if err != nil {
		t.Fatalf("Launch: %v; want the checked file to run, not the one swapped in", err)
	}
	defer p.Kill()
	if d, err := p.Describe(context.Background()); err != nil || d.Name != "sdktest" {
		t.Errorf("Describe = %+v, %v; want the pinned plugin", d, err)
	}
}

// TestPluginEnvironmentIsTheGivenOne: the supervisor's secrets never reach
// a plugin; what Env allows does.
func TestPluginEnvironmentIsTheGivenOne(t *testing.T) {
	t.Setenv("STOKER_AUTH_TOKEN", "secret-token-1234")
	t.Setenv("STOKER_SDCPP_THREADS", "3")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p, err := launchAt(exe, plugins.Env(os.Environ(), nil)...)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.Pid()) + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	env := strings.Split(string(b), "\x00")
	has := func(kv string) bool {
		for _, e := range env {
			if e == kv || strings.HasPrefix(e, kv+"=") {
				return true
			}
		}
		return false
	}
	if has("STOKER_AUTH_TOKEN") {
		t.Errorf("the plugin got STOKER_AUTH_TOKEN")
	}
	if !has("STOKER_SDCPP_THREADS=3") || !has("PATH") {
		t.Errorf("the plugin lacks STOKER_SDCPP_THREADS=3 or PATH: %q", env)
	}
}

func TestEnvAllowList(t *testing.T) {
	environ := []string{"PATH=/bin", "STOKER_AUTH_TOKEN=x", "AWS_SECRET_ACCESS_KEY=y", "CUDA_VISIBLE_DEVICES=1",
		"GGML_VK_VISIBLE_DEVICES=0", "STOKER_LLAMA_THREADS=4", "MYENGINE_MODE=fast", "LC_ALL=C", "NOEQUALS"}
	got := plugins.Env(environ, []string{"MYENGINE_*"})
	want := []string{"PATH=/bin", "CUDA_VISIBLE_DEVICES=1", "GGML_VK_VISIBLE_DEVICES=0", "STOKER_LLAMA_THREADS=4", "MYENGINE_MODE=fast", "LC_ALL=C"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("Env = %q, want %q", got, want)
	}
}

// TestPluginInheritsNoDescriptors: a descriptor the supervisor holds
// without close-on-exec (as one inherited from its own parent would be)
// does not reach the plugin.
func TestPluginInheritsNoDescriptors(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "inherited-marker")
	f, err := os.Create(marker)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, _, errno := syscall.Syscall(syscall.SYS_FCNTL, f.Fd(), syscall.F_SETFD, 0); errno != 0 {
		t.Fatal(errno)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p, err := launchAt(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	fdDir := "/proc/" + strconv.Itoa(p.Pid()) + "/fd"
	ents, err := os.ReadDir(fdDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if target, err := os.Readlink(filepath.Join(fdDir, e.Name())); err == nil && target == marker {
			t.Errorf("the plugin holds the supervisor's descriptor as its fd %s", e.Name())
		}
	}
}

// TestScriptPluginRuns: a plugin that is a script ("#!") runs from its
// checked descriptor too, which its interpreter opens after the exec.
func TestScriptPluginRuns(t *testing.T) {
	dir := t.TempDir()
	exe := copyExe(t, dir, "engine", 0o755)
	script := filepath.Join(dir, "script-plugin")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexec "+exe+" \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(script)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	p, err := plugins.Launch(plugins.LaunchConfig{Path: script, Env: []string{envServe + "=1"}, SHA256: hex.EncodeToString(sum[:])})
	if err != nil {
		t.Fatalf("Launch: %v", err)
	}
	defer p.Kill()
	if d, err := p.Describe(context.Background()); err != nil || d.Name != "sdktest" {
		t.Errorf("Describe = %+v, %v", d, err)
	}
}
