package config

import (
	"os"
	"path/filepath"
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
	if c.APIBaseURL != "https://studio.minis.gg/" || c.VRAMThresholdGB != 12 || !*c.AutoStart ||
		c.ModelsRoot != "/tmp/st/models" || c.WSReconnectAttempts != 0 || c.LogLevel != "info" {
		t.Errorf("defaults: %+v", c)
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
