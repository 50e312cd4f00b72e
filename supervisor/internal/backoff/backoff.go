// Package backoff is the reconnect policy of the studio session (spec §9.1):
// a pure object that answers "wait this long" and "give up" for an attempt
// number. It starts no goroutines and reads no clock; the caller waits under
// its own context.
package backoff

import "time"

// The spec's defaults (§9.1, §11).
const (
	DefaultBase = time.Second
	DefaultMax  = 30 * time.Second
)

// Policy is an exponential backoff: Delay(n) = min(Base × 2^(n−1), Max).
// The zero value is the spec's policy (1 s doubling to 30 s, no attempt cap).
// A Policy is a value; it holds no counters, so one may be shared freely.
type Policy struct {
	// Base is the delay before the first retry (default 1s).
	Base time.Duration
	// Max caps every delay (default 30s).
	Max time.Duration
	// MaxAttempts is how many consecutive failed attempts are retried;
	// 0 means forever (the LATER default, ws_reconnect_attempts = 0).
	MaxAttempts int
}

func (p Policy) base() time.Duration {
	if p.Base <= 0 {
		return DefaultBase
	}
	return p.Base
}

func (p Policy) max() time.Duration {
	if p.Max <= 0 {
		return DefaultMax
	}
	return p.Max
}

// Delay returns how long to wait before retry number attempt (1-based).
// An attempt below 1 is treated as 1. The result never exceeds Max and
// never overflows, whatever attempt is.
func (p Policy) Delay(attempt int) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	base, limit := p.base(), p.max()
	if base >= limit {
		return limit
	}
	d := base
	for i := 1; i < attempt; i++ {
		if d >= limit/2 {
			return limit
		}
		d *= 2
	}
	return d
}

// Exhausted reports whether attempt (1-based, counting consecutive failures)
// is past the cap, i.e. the caller should give up instead of waiting.
// It is never true when MaxAttempts is 0.
func (p Policy) Exhausted(attempt int) bool {
	return p.MaxAttempts > 0 && attempt > p.MaxAttempts
}
