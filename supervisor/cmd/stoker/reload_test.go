package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/stokerhq/stoker/supervisor/internal/config"
)

// TestReload: log_level applies at once, to loggers derived before the
// reload too; other changed keys are named for a restart; a config that
// does not load changes nothing.
func TestReload(t *testing.T) {
	t.Setenv("STOKER_STATE_DIR", t.TempDir())
	path := filepath.Join(t.TempDir(), "stoker.toml")
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(`log_level = "info"`)
	cfg, err := config.Load(path, os.Environ())
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	log := hclog.NewInterceptLogger(&hclog.LoggerOptions{Level: hclog.Info, Output: &buf})
	derived := log.Named("studio")
	r := &reloader{path: path, log: log, cur: *cfg}

	write("log_level = \"debug\"\nlisten = \"127.0.0.1:9999\"")
	r.reload()
	if !derived.IsDebug() {
		t.Error("a logger derived before the reload is not at debug")
	}
	if out := buf.String(); !strings.Contains(out, "config reloaded") || !strings.Contains(out, "restart_to_apply=[\"listen\"]") {
		t.Errorf("reload line:\n%s", out)
	}

	buf.Reset()
	write(`log_level = "loud"`)
	r.reload()
	if !derived.IsDebug() || !strings.Contains(buf.String(), "config not reloaded") {
		t.Errorf("a bad config changed the level or was not logged:\n%s", buf.String())
	}

	buf.Reset()
	write(`log_level = "error"`)
	r.reload()
	if derived.IsWarn() || !derived.IsError() {
		t.Error("log_level error did not apply")
	}
	if !strings.Contains(buf.String(), "config reloaded") {
		t.Errorf("the reload to a quieter level was not announced:\n%s", buf.String())
	}
}
