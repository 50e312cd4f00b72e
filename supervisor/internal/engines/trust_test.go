package engines_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/supervisor/internal/engines"
)

func sumOf(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TestPins: a pin that names no plugin stops the start (a typo would leave
// the plugin it meant unpinned); require_pins refuses an unpinned plugin;
// a pin by absolute path or by file name lets the plugin run.
func TestPins(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	good := sumOf(t, exe)
	tests := []struct {
		name    string
		pins    map[string]string
		require bool
		refused string // in Start's error; "" when Start must succeed
	}{
		{"pin for a missing plugin", map[string]string{"llamacpp-plugin": good}, false, `pins "llamacpp-plugin", which names no plugin`},
		{"required, none given", nil, true, "has no pin"},
		{"required, pinned by path", map[string]string{exe: good}, true, ""},
		{"required, pinned by name", map[string]string{filepath.Base(exe): good}, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := engines.Start(context.Background(), engines.Config{Plugins: []string{exe}, Env: []string{envServe + "=1"}, SHA256: tt.pins, RequirePins: tt.require})
			if tt.refused != "" {
				if err == nil {
					h.Close()
					t.Fatalf("Start succeeded, want it refused with %q", tt.refused)
				}
				if !strings.Contains(err.Error(), tt.refused) {
					t.Errorf("Start: %v, want %q in it", err, tt.refused)
				}
				return
			}
			if err != nil {
				t.Fatalf("Start: %v", err)
			}
			defer h.Close()
			waitState(t, h, engines.StateReady)
		})
	}
}

func TestDiscoverRefusesWhatOthersCanChange(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		setup func(dir string) error
	}{
		{"a plugin that is a symbolic link", func(dir string) error { return os.Symlink(exe, filepath.Join(dir, "x-plugin")) }},
		{"a dir writable by group", func(dir string) error { return os.Chmod(dir, 0o775) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := tt.setup(dir); err != nil {
				t.Fatal(err)
			}
			if _, err := engines.Discover(dir); !errors.Is(err, plugins.ErrUntrusted) {
				t.Errorf("Discover: %v, want an error wrapping plugins.ErrUntrusted", err)
			}
		})
	}
}
