package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "stoker.toml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoad(t *testing.T) {
	path := write(t, `
api_base_url = "https://studio.example/"
models_root = "/srv/models"
vram_threshold_gb = 20.5
ws_reconnect_attempts = 5
plugins = ["/opt/x-plugin"]
state_dir = "/var/lib/stoker"
stall_timeout = "90s"
auth_token = "tok-123"
worker_id = "w-1"
`)
	c, err := Load(path, []string{"STOKER_VRAM_THRESHOLD_GB=8", "STOKER_PLUGINS=/a-plugin, /b-plugin", "OTHER=1"})
	if err != nil {
		t.Fatal(err)
	}
	if c.APIBaseURL != "https://studio.example/" || c.ModelsRoot != "/srv/models" || c.WSReconnectAttempts != 5 {
		t.Errorf("got %+v", c)
	}
	if c.VRAMThresholdGB != 8 {
		t.Errorf("vram_threshold_gb = %v, want the env override 8", c.VRAMThresholdGB)
	}
	if got := strings.Join(c.Plugins, ","); got != "/a-plugin,/b-plugin" {
		t.Errorf("plugins = %q", got)
	}
	if c.StallTimeout.D() != 90*time.Second {
		t.Errorf("stall_timeout = %v", c.StallTimeout.D())
	}
	if c.AuthToken.Reveal() != "tok-123" {
		t.Errorf("auth_token not read")
	}
}

func TestDefaults(t *testing.T) {
	c, err := Load("", []string{"STOKER_STATE_DIR=/tmp/st"})
	if err != nil {
		t.Fatal(err)
	}
	if c.APIBaseURL != "https://studio.minis.gg/" || c.VRAMThresholdGB != 0 || c.GPU != "" || !*c.AutoStart ||
		c.ModelsRoot != "/tmp/st/models" || c.WSReconnectAttempts != 0 || c.LogLevel != "info" {
		t.Errorf("defaults: %+v", c)
	}
}

func TestGPU(t *testing.T) {
	c, err := Load("", []string{"STOKER_STATE_DIR=/tmp/st", "STOKER_GPU=3"})
	if err != nil {
		t.Fatal(err)
	}
	if c.GPU != "3" {
		t.Errorf("gpu = %q, want STOKER_GPU's 3", c.GPU)
	}
}

func TestListen(t *testing.T) {
	tests := []struct {
		name, body string
		env        []string
		want       string
	}{
		{"default", ``, nil, DefaultListen},
		{"off in the file", `listen = ""`, nil, ""},
		{"off by env", ``, []string{"STOKER_LISTEN="}, ""},
		{"set", `listen = "0.0.0.0:9000"`, nil, "0.0.0.0:9000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(write(t, tt.body), append(tt.env, "STOKER_STATE_DIR=/tmp/x"))
			if err != nil {
				t.Fatal(err)
			}
			if c.Listen != tt.want {
				t.Errorf("listen = %q, want %q", c.Listen, tt.want)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name, body string
		env        []string
		want       string
	}{
		{"unknown key", `api_base_uri = "x"`, nil, "unknown keys: api_base_uri"},
		{"bad toml", `api_base_url = `, nil, "config"},
		{"bad scheme", `api_base_url = "ftp://h/"`, nil, "api_base_url"},
		{"token without id", `auth_token = "t"`, nil, "worker_id and auth_token"},
		{"bad level", `log_level = "loud"`, nil, "log_level"},
		{"bad duration", `stall_timeout = "soon"`, nil, "stall_timeout"},
		{"bad env number", ``, []string{"STOKER_WS_RECONNECT_ATTEMPTS=many"}, "STOKER_WS_RECONNECT_ATTEMPTS"},
		{"negative attempts", `ws_reconnect_attempts = -1`, nil, "ws_reconnect_attempts"},
		{"gpu not an index", `gpu = "first"`, nil, `gpu "first": want the index of a GPU`},
		{"negative gpu", `gpu = "-1"`, nil, `gpu "-1"`},
		{"gpu as the engine build", ``, []string{"STOKER_GPU=vulkan"}, "STOKER_GPU=vulkan is for scripts/install-engines.sh"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(write(t, tt.body), append(tt.env, "STOKER_STATE_DIR=/tmp/x"))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestTokenNeverPrinted(t *testing.T) {
	c, err := Load(write(t, "worker_id = \"w\"\nauth_token = \"very-secret\""), []string{"STOKER_STATE_DIR=/tmp/x"})
	if err != nil {
		t.Fatal(err)
	}
	if s := strings.Join([]string{sprint(c)}, ""); strings.Contains(s, "very-secret") {
		t.Errorf("config printed the token: %s", s)
	}
}

func TestCrashIsolationKeys(t *testing.T) {
	pin := strings.Repeat("ab", 32)
	path := write(t, `
state_dir = "/tmp/st"
plugin_crash_limit = 5
plugin_crash_window = "10m"
plugin_quarantine = "30s"
drain_timeout = "5s"
[stall_timeouts]
"llama-cpp" = "2m"
[plugin_sha256]
"synthetic-plugin" = "`+pin+`"
`)
	c, err := Load(path, []string{"STOKER_STALL_TIMEOUTS=faults=1s, llama-cpp=3m"})
	if err != nil {
		t.Fatal(err)
	}
	if c.PluginCrashLimit != 5 || c.PluginCrashWindow.D() != 10*time.Minute || c.PluginQuarantine.D() != 30*time.Second || c.DrainTimeout.D() != 5*time.Second {
		t.Errorf("got limit %d window %v quarantine %v drain %v", c.PluginCrashLimit, c.PluginCrashWindow.D(), c.PluginQuarantine.D(), c.DrainTimeout.D())
	}
	if got := c.StallTimeouts; len(got) != 2 || got["faults"].D() != time.Second || got["llama-cpp"].D() != 3*time.Minute {
		t.Errorf("stall_timeouts = %v, want the env's faults=1s, llama-cpp=3m", got)
	}
	if c.PluginSHA256["synthetic-plugin"] != pin {
		t.Errorf("plugin_sha256 = %v", c.PluginSHA256)
	}

	d, err := Load("", []string{"STOKER_STATE_DIR=/tmp/st"})
	if err != nil {
		t.Fatal(err)
	}
	if d.PluginCrashLimit != 3 || d.PluginCrashWindow.D() != 5*time.Minute || d.PluginQuarantine.D() != time.Minute || d.DrainTimeout.D() != time.Minute {
		t.Errorf("defaults: limit %d window %v quarantine %v drain %v; want 3, 5m, 1m, 1m", d.PluginCrashLimit, d.PluginCrashWindow.D(), d.PluginQuarantine.D(), d.DrainTimeout.D())
	}
}

func TestCrashIsolationKeysRefused(t *testing.T) {
	tests := []struct{ name, env string }{
		{"short pin", "STOKER_PLUGIN_SHA256=synthetic-plugin=abcd"},
		{"not a pair", "STOKER_PLUGIN_SHA256=synthetic-plugin"},
		{"zero stall", "STOKER_STALL_TIMEOUTS=faults=0s"},
		{"bad duration", "STOKER_STALL_TIMEOUTS=faults=soon"},
		{"negative limit", "STOKER_PLUGIN_CRASH_LIMIT=-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Load("", []string{"STOKER_STATE_DIR=/tmp/st", tt.env}); err == nil {
				t.Errorf("Load with %s succeeded, want an error", tt.env)
			}
		})
	}
}

func TestPluginTrustAndBoundKeys(t *testing.T) {
	path := write(t, `
state_dir = "/tmp/st"
require_pins = true
plugin_env = ["MYENGINE_*", "OMP_NUM_THREADS"]
[job_timeouts]
image = "30m"
video = "12h"
`)
	c, err := Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !c.RequirePins || !slices.Equal(c.PluginEnv, []string{"MYENGINE_*", "OMP_NUM_THREADS"}) {
		t.Errorf("require_pins %v plugin_env %v", c.RequirePins, c.PluginEnv)
	}
	if got := c.JobTimeouts; len(got) != 2 || got["image"].D() != 30*time.Minute || got["video"].D() != 12*time.Hour {
		t.Errorf("job_timeouts = %v", got)
	}
	e, err := Load("", []string{"STOKER_STATE_DIR=/tmp/st", "STOKER_REQUIRE_PINS=true", "STOKER_JOB_TIMEOUTS=llm=1h", "STOKER_PLUGIN_ENV=A_B,C*"})
	if err != nil {
		t.Fatal(err)
	}
	if !e.RequirePins || e.JobTimeouts["llm"].D() != time.Hour || !slices.Equal(e.PluginEnv, []string{"A_B", "C*"}) {
		t.Errorf("from the environment: require_pins %v job_timeouts %v plugin_env %v", e.RequirePins, e.JobTimeouts, e.PluginEnv)
	}

	refused := []struct{ name, env string }{
		{"unknown kind", "STOKER_JOB_TIMEOUTS=picture=1h"},
		{"zero timeout", "STOKER_JOB_TIMEOUTS=llm=0s"},
		{"the agent's token", "STOKER_PLUGIN_ENV=STOKER_AUTH_TOKEN"},
		{"not a name", "STOKER_PLUGIN_ENV=A-B"},
		{"relative pin path", "STOKER_PLUGIN_SHA256=bin/x-plugin=" + strings.Repeat("ab", 32)},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Load("", []string{"STOKER_STATE_DIR=/tmp/st", tt.env}); err == nil {
				t.Errorf("Load with %s succeeded, want an error", tt.env)
			}
		})
	}
	for name, want := range map[string]bool{"STOKER_AUTH_TOKEN": true, "STOKER_LISTEN": true, "STOKER_SDCPP_THREADS": false, "PATH": false} {
		if got := IsSetting(name); got != want {
			t.Errorf("IsSetting(%s) = %v, want %v", name, got, want)
		}
	}
}
