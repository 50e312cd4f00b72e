package engines

import "time"

// Breaker is the crash-loop policy of one plugin: a pure object that
// records crashes and answers whether the plugin may be restarted now. It
// starts no goroutines and reads no clock; callers pass the time.
type Breaker struct {
	// Crashes within Window trip the breaker. (default 3)
	Crashes int
	// Window is the span crashes are counted over. (default 5m)
	Window time.Duration
	// Cooldown is how long a tripped plugin stays quarantined before a
	// re-probe. (default 1m)
	Cooldown time.Duration

	crashes []time.Time // crash times within Window, oldest first
	until   time.Time   // quarantined until then; zero when not tripped
	// probation is set when the breaker trips and cleared by Success: a
	// plugin back from quarantine that crashes again before it proved
	// healthy is quarantined again at once.
	probation bool
}

func (b *Breaker) defaults() {
	if b.Crashes == 0 {
		b.Crashes = 3
	}
	if b.Window == 0 {
		b.Window = 5 * time.Minute
	}
	if b.Cooldown == 0 {
		b.Cooldown = time.Minute
	}
}

// Crash records a crash at now and reports whether it tripped the breaker.
func (b *Breaker) Crash(now time.Time) (tripped bool) {
	b.defaults()
	cut := now.Add(-b.Window)
	kept := b.crashes[:0]
	for _, t := range b.crashes {
		if t.After(cut) {
			kept = append(kept, t)
		}
	}
	b.crashes = append(kept, now)
	if len(b.crashes) >= b.Crashes || b.probation && !now.Before(b.until) {
		b.until = now.Add(b.Cooldown)
		b.crashes = b.crashes[:0]
		b.probation = true
		return true
	}
	return false
}

// Success records that the plugin proved healthy (a re-probe after the
// cooldown answered Describe): the probation that follows a quarantine
// ends.
func (b *Breaker) Success() { b.probation = false }

// Quarantined reports whether the plugin is out of service at now, and
// until when.
func (b *Breaker) Quarantined(now time.Time) (bool, time.Time) {
	return now.Before(b.until), b.until
}

// Recent is the number of crashes counted in the current window.
func (b *Breaker) Recent() int { return len(b.crashes) }
