package config

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestOrigins: each key says whether its value is the default, the
// file's, a variable's or a -set flag's, the later winning.
func TestOrigins(t *testing.T) {
	path := write(t, `
vram_threshold_gb = 20
log_level = "debug"
drain_timeout = "2m"
[stall_timeouts]
"llama-cpp" = "2m"
`)
	c, o, err := LoadWithOrigins(path, []string{"STOKER_STATE_DIR=/tmp/st", "STOKER_LOG_LEVEL=warn", "STOKER_DRAIN_TIMEOUT=3m"},
		[]string{"drain_timeout=4m", "plugins=/a-plugin,/b-plugin"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Origin{
		"vram_threshold_gb": FromFile, "stall_timeouts": FromFile, "log_level": FromEnv, "state_dir": FromEnv,
		"drain_timeout": FromFlag, "plugins": FromFlag, "api_base_url": FromDefault, "listen": FromDefault,
	}
	for key, origin := range want {
		if o[key] != origin {
			t.Errorf("origin of %s = %q, want %q", key, o[key], origin)
		}
	}
	if c.LogLevel != "warn" || c.DrainTimeout.D().String() != "4m0s" || len(c.Plugins) != 2 {
		t.Errorf("values: log_level %q drain_timeout %v plugins %v", c.LogLevel, c.DrainTimeout.D(), c.Plugins)
	}
	if len(o) != len(Keys()) {
		t.Errorf("%d origins for %d keys", len(o), len(Keys()))
	}
}

// TestSetRefused: a -set naming no key, without '=', or with a value that
// does not parse is refused with the key named.
func TestSetRefused(t *testing.T) {
	for set, want := range map[string]string{
		"vram_treshold_gb=3": "unknown key",
		"log_level":          "want key=value",
		"drain_timeout=soon": "-set drain_timeout",
	} {
		_, _, err := LoadWithOrigins("", []string{"STOKER_STATE_DIR=/tmp/st"}, []string{set})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("-set %s: err = %v, want it to say %q", set, err, want)
		}
	}
}

// TestWriteLoadsBack: what Write prints is a config file that loads as the
// same config, the token aside, which prints redacted.
func TestWriteLoadsBack(t *testing.T) {
	path := write(t, `
worker_id = "w-1"
auth_token = "very-secret-token"
allowed_hosts = ["node1.example"]
fetch_allow = ["10.0.0.0/8"]
listen = ""
auto_start = false
[job_timeouts]
image = "30m"
llm = "1h"
[plugin_sha256]
"synthetic-plugin" = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
`)
	c, o, err := LoadWithOrigins(path, []string{"STOKER_STATE_DIR=/tmp/st"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := c.Write(&b, o); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if strings.Contains(out, "very-secret-token") || !strings.Contains(out, `auth_token = "`+Redacted+`"`) {
		t.Errorf("the token is not redacted:\n%s", out)
	}
	if !strings.Contains(out, "# file") || !strings.Contains(out, "# env") || !strings.Contains(out, "# default") {
		t.Errorf("origins missing:\n%s", out)
	}
	back := filepath.Join(t.TempDir(), "printed.toml")
	if err := os.WriteFile(back, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	c2, err := Load(back, nil)
	if err != nil {
		t.Fatalf("printed config does not load: %v\n%s", err, out)
	}
	if c2.AuthToken.Reveal() != Redacted {
		t.Errorf("token loaded back as %q", c2.AuthToken.Reveal())
	}
	// Printed again, only the origins differ (an empty list and a nil one
	// print alike).
	var b2 bytes.Buffer
	if err := c2.Write(&b2, nil); err != nil {
		t.Fatal(err)
	}
	if got, want := values(b2.String()), values(out); !reflect.DeepEqual(got, want) {
		t.Errorf("printed config loads differently:\n%s\nvs\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// values returns Write's lines without their origin comments.
func values(printed string) []string {
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(printed), "\n") {
		v, _, _ := strings.Cut(line, "#")
		out = append(out, strings.TrimSpace(v))
	}
	return out
}
