package plugins

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestCutLine(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{"short", "hello"},
		{"at the limit", strings.Repeat("x", MaxLogBytes)},
		{"one over", strings.Repeat("x", MaxLogBytes+1)},
		{"40 MiB", strings.Repeat("x", 40<<20)},
		{"multibyte", strings.Repeat("é", MaxLogBytes)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := cutLine(tt.in)
			if len(tt.in) <= MaxLogBytes {
				if got != tt.in {
					t.Errorf("a line within the limit was changed")
				}
				return
			}
			if len(got) > MaxLogBytes || !strings.Contains(got, "bytes cut]") || !utf8.ValidString(got) {
				t.Errorf("got %d bytes ending %q, want at most %d, valid UTF-8, with the marker", len(got), got[max(0, len(got)-40):], MaxLogBytes)
			}
		})
	}
}

func TestLogBudget(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := newLogBudget()
	for i := range LogBurst {
		if ok, _ := b.take(t0); !ok {
			t.Fatalf("line %d of the burst refused", i)
		}
	}
	for range 10 {
		if ok, _ := b.take(t0); ok {
			t.Fatalf("a line past the burst passed at the same instant")
		}
	}
	// One refill period later exactly one line passes, reporting the ten.
	ok, dropped := b.take(t0.Add(logRefill))
	if !ok || dropped != 10 {
		t.Errorf("after one refill: ok %v dropped %d, want true 10", ok, dropped)
	}
	if ok, _ := b.take(t0.Add(logRefill)); ok {
		t.Errorf("a second line passed on one refill")
	}
	if n := b.flush(); n != 1 {
		t.Errorf("flush = %d, want the 1 dropped since", n)
	}
	// A long quiet period refills to the burst, no further.
	later := t0.Add(time.Hour)
	passed := 0
	for range 2 * LogBurst {
		if ok, _ := b.take(later); ok {
			passed++
		}
	}
	if passed != LogBurst {
		t.Errorf("after an hour %d lines passed at once, want %d", passed, LogBurst)
	}
}
