package main

import (
	"context"
	"io"
	"strings"
	"testing"
)

// TestDevStudioRefusesNonLoopback: the dev studio has no login for people
// (anyone who reaches it submits jobs, reads results and approves
// workers), so an address off loopback needs -insecure-listen. The check
// comes before anything is built or bound.
func TestDevStudioRefusesNonLoopback(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // nothing may start: the refusal comes first
	tests := []struct {
		name string
		args []string
	}{
		{"studio on all interfaces", []string{"studio", "-listen", "0.0.0.0:0"}},
		{"studio on a port only", []string{"studio", "-listen", ":0"}},
		{"studio on a name", []string{"studio", "-listen", "studio.example:8700"}},
		{"agent -dev on all interfaces", []string{"agent", "-dev", "-dev-listen", "0.0.0.0:0", "-dev-state", t.TempDir()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("STOKER_STATE_DIR", t.TempDir())
			err := run(ctx, tt.args, stdio{out: io.Discard, err: io.Discard})
			if err == nil || !strings.Contains(err.Error(), "-insecure-listen") {
				t.Errorf("run %v = %v, want a refusal naming -insecure-listen", tt.args, err)
			}
		})
	}
}

func TestCheckDevListen(t *testing.T) {
	tests := []struct {
		addr     string
		insecure bool
		ok       bool
	}{
		{"127.0.0.1:8700", false, true},
		{"[::1]:8700", false, true},
		{"localhost:8700", false, true},
		{"0.0.0.0:8700", false, false},
		{"0.0.0.0:8700", true, true},
		{"studio.example:8700", true, true},
	}
	for _, tt := range tests {
		if err := checkDevListen("-listen", tt.addr, tt.insecure); (err == nil) != tt.ok {
			t.Errorf("checkDevListen(%q, insecure %v) = %v, want ok %v", tt.addr, tt.insecure, err, tt.ok)
		}
	}
}
