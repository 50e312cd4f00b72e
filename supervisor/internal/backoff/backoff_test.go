package backoff

import (
	"math"
	"testing"
	"time"
)

func TestDelay(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name    string
		p       Policy
		attempt int
		want    time.Duration
	}{
		{"spec first", Policy{}, 1, 1 * time.Second},
		{"spec second", Policy{}, 2, 2 * time.Second},
		{"spec third", Policy{}, 3, 4 * time.Second},
		{"spec fourth", Policy{}, 4, 8 * time.Second},
		{"spec fifth", Policy{}, 5, 16 * time.Second},
		{"spec sixth capped", Policy{}, 6, 30 * time.Second},
		{"spec seventh capped", Policy{}, 7, 30 * time.Second},
		{"zero attempt acts as first", Policy{}, 0, 1 * time.Second},
		{"negative attempt acts as first", Policy{}, -5, 1 * time.Second},
		{"huge attempt does not overflow", Policy{}, math.MaxInt, 30 * time.Second},
		{"custom base", Policy{Base: 100 * ms, Max: time.Second}, 4, 800 * ms},
		{"custom cap", Policy{Base: 100 * ms, Max: time.Second}, 5, time.Second},
		{"base above max", Policy{Base: 5 * time.Second, Max: time.Second}, 1, time.Second},
		{"max not a power-of-two multiple", Policy{Base: 3 * ms, Max: 10 * ms}, 3, 10 * ms},
		{"huge base and max", Policy{Base: time.Duration(math.MaxInt64 / 4), Max: time.Duration(math.MaxInt64)}, 64, time.Duration(math.MaxInt64)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.Delay(tt.attempt); got != tt.want {
				t.Errorf("Delay(%d) = %v, want %v", tt.attempt, got, tt.want)
			}
		})
	}
}

func TestExhausted(t *testing.T) {
	tests := []struct {
		name    string
		max     int
		attempt int
		want    bool
	}{
		{"forever first", 0, 1, false},
		{"forever very late", 0, math.MaxInt, false},
		{"cap five at five", 5, 5, false},
		{"cap five at six", 5, 6, true},
		{"cap one at one", 1, 1, false},
		{"cap one at two", 1, 2, true},
		{"negative cap is forever", -1, 100, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Policy{MaxAttempts: tt.max}
			if got := p.Exhausted(tt.attempt); got != tt.want {
				t.Errorf("Exhausted(%d) with MaxAttempts %d = %v, want %v", tt.attempt, tt.max, got, tt.want)
			}
		})
	}
}
