package config

import (
	"strings"
	"testing"
)

// TestPlainHTTPOnlyToLoopback: the worker sends its bearer token to the
// studio on every request; over plain http to another machine anyone on
// the path reads it. http is kept for loopback (the dev studio, tests).
func TestPlainHTTPOnlyToLoopback(t *testing.T) {
	tests := []struct {
		url string
		ok  bool
	}{
		{"https://studio.example/", true},
		{"http://127.0.0.1:8700/", true},
		{"http://127.8.9.10:8700", true},
		{"http://[::1]:8700/", true},
		{"http://localhost:8700/", true},
		{"http://studio.example/", false},
		{"http://192.0.2.1:8700/", false},
		{"http://0.0.0.0:8700/", false},
		{"http://localhost.evil.example/", false},
		{"http://127.0.0.1.nip.io/", false},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			_, err := Load("", []string{"STOKER_STATE_DIR=/tmp/st", "STOKER_API_BASE_URL=" + tt.url})
			if tt.ok && err != nil {
				t.Errorf("Load = %v, want it accepted", err)
			}
			if !tt.ok && (err == nil || !strings.Contains(err.Error(), "api_base_url")) {
				t.Errorf("Load = %v, want a refusal naming api_base_url", err)
			}
		})
	}
}

// TestAllowedHosts: names the local API answers to besides IP literals and
// localhost.
func TestAllowedHosts(t *testing.T) {
	c, err := Load(write(t, `allowed_hosts = ["node1.example", "node1"]`), []string{"STOKER_STATE_DIR=/tmp/st"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.AllowedHosts, ","); got != "node1.example,node1" {
		t.Errorf("allowed_hosts = %q", got)
	}
	c, err = Load("", []string{"STOKER_STATE_DIR=/tmp/st", "STOKER_ALLOWED_HOSTS=a.example, b.example"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.AllowedHosts, ","); got != "a.example,b.example" {
		t.Errorf("STOKER_ALLOWED_HOSTS = %q", got)
	}
	for _, bad := range []string{"node1:8710", "http://node1", "no spaces", ""} {
		if _, err := Load("", []string{"STOKER_STATE_DIR=/tmp/st", "STOKER_ALLOWED_HOSTS=ok.example," + bad + ","}); bad != "" && err == nil {
			t.Errorf("allowed_hosts with %q loaded, want a refusal", bad)
		}
	}
}
