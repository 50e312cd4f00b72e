package config

import (
	"strings"
	"testing"
)

// TestFetchAllow: the networks, addresses and names downloads may reach
// besides public addresses; none by default, and a bad entry stops the
// start.
func TestFetchAllow(t *testing.T) {
	c, err := Load("", []string{"STOKER_STATE_DIR=/tmp/st"})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.FetchAllow) != 0 {
		t.Errorf("default fetch_allow: got %q, want none", c.FetchAllow)
	}
	c, err = Load(write(t, `fetch_allow = ["10.1.0.0/16", "::1", "mirror.lan"]`), []string{"STOKER_STATE_DIR=/tmp/st"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.FetchAllow, ","); got != "10.1.0.0/16,::1,mirror.lan" {
		t.Errorf("fetch_allow: got %q", got)
	}
	c, err = Load("", []string{"STOKER_STATE_DIR=/tmp/st", "STOKER_FETCH_ALLOW=127.0.0.0/8, ::1"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.FetchAllow, ","); got != "127.0.0.0/8,::1" {
		t.Errorf("STOKER_FETCH_ALLOW: got %q", got)
	}
	for _, bad := range []string{"10.0.0.0/40", "http://mirror.lan", "mirror lan"} {
		_, err := Load("", []string{"STOKER_STATE_DIR=/tmp/st", "STOKER_FETCH_ALLOW=" + bad})
		if err == nil || !strings.Contains(err.Error(), "fetch_allow") {
			t.Errorf("fetch_allow %q: got %v, want a refusal naming fetch_allow", bad, err)
		}
	}
}
