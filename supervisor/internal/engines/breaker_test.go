package engines

import (
	"testing"
	"time"
)

func TestBreaker(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name        string
		crashes     []time.Duration // offsets from t0
		wantTripped bool            // after the last crash
		at          time.Duration   // when to ask Quarantined
		wantQuar    bool
	}{
		{"one crash", []time.Duration{0}, false, time.Second, false},
		{"two crashes", []time.Duration{0, time.Minute}, false, 2 * time.Minute, false},
		{"three in window", []time.Duration{0, time.Minute, 2 * time.Minute}, true, 2*time.Minute + time.Second, true},
		{"cooldown over", []time.Duration{0, time.Minute, 2 * time.Minute}, true, 3*time.Minute + time.Second, false},
		{"spread past window", []time.Duration{0, 3 * time.Minute, 6 * time.Minute}, false, 6*time.Minute + time.Second, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b Breaker
			var tripped bool
			for _, c := range tt.crashes {
				tripped = b.Crash(t0.Add(c))
			}
			if tripped != tt.wantTripped {
				t.Errorf("tripped = %v, want %v", tripped, tt.wantTripped)
			}
			if q, _ := b.Quarantined(t0.Add(tt.at)); q != tt.wantQuar {
				t.Errorf("Quarantined = %v, want %v", q, tt.wantQuar)
			}
		})
	}
}

func TestBreakerProbation(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := Breaker{Crashes: 2, Window: time.Minute, Cooldown: 10 * time.Second}
	b.Crash(t0)
	if !b.Crash(t0.Add(time.Second)) {
		t.Fatalf("two crashes in the window did not trip")
	}
	after := t0.Add(12 * time.Second) // cooldown over, re-probe failed
	if !b.Crash(after) {
		t.Errorf("a crash on probation did not trip again at once")
	}
	if q, until := b.Quarantined(after.Add(time.Second)); !q || !until.Equal(after.Add(10*time.Second)) {
		t.Errorf("Quarantined = %v until %v, want true until %v", q, until, after.Add(10*time.Second))
	}
	b.Success()
	later := after.Add(11 * time.Second)
	if b.Crash(later) {
		t.Errorf("one crash after a successful re-probe tripped the breaker")
	}
}
