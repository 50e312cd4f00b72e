package plugins

import (
	"fmt"
	"sync"
	"time"
)

// The bounds on what crosses the process boundary between the supervisor
// and a plugin, each in one place with the reason for its value. The host
// enforces every one of them on what it receives (a plugin need not use
// this SDK); the SDK keeps a well-behaved plugin inside them, so that only
// a hostile or broken plugin ever meets the host's refusal.

const (
	// MaxResultBytes bounds a job's JSON result (Events.Result). A result
	// over it fails the job as bad input, not retryable: every stoker node
	// has the same bound, so another attempt would fail the same way.
	// Real results are far smaller: an hour of speech with word
	// timestamps is about 0.6 MB of JSON, 128k generated tokens about
	// 0.5 MB.
	MaxResultBytes = 4 << 20

	// MaxTextPieceBytes bounds one piece of an llm answer streamed as it
	// is generated (StreamText); a token is a few bytes, and the SDK
	// splits a longer piece. The pieces of one job together are bounded
	// by MaxResultBytes, as the answer they make up is.
	MaxTextPieceBytes = 64 << 10

	// MaxMessageBytes is the host's gRPC receive limit per message from a
	// plugin. go-plugin raises gRPC's own 4 MiB default to 2 GiB, which a
	// plugin could make the host allocate with one frame header; the
	// largest message a plugin needs to send is one JSON result (output
	// travels in chunks of 512 KiB), so the limit is that plus room for
	// the event's framing. A message over it fails the job as a breach of
	// the engine contract; the plugin lives on.
	MaxMessageBytes = MaxResultBytes + 64<<10

	// MaxDescribeBytes is the host's receive limit for a Describe answer,
	// and MaxListBytes for a ListResident one. Describe is advertised to
	// the studio in every heartbeat (every 5 s); 256 KiB holds a thousand
	// model ids with room to spare.
	MaxDescribeBytes = 256 << 10
	MaxListBytes     = 256 << 10

	// MaxModelsPerKind bounds the model ids a plugin advertises per task
	// kind, MaxEngines its engine ids, and MaxNameBytes each of those ids
	// and its name, version and device strings. A plugin serves a handful
	// of engines and advertises wildcards ("llama-cpp:*") or a catalogue
	// of tens of models; the bounds are far above that and keep the
	// heartbeat small. MaxReasonBytes bounds NotReadyReason.
	MaxModelsPerKind = 256
	MaxEngines       = 16
	MaxNameBytes     = 256
	MaxReasonBytes   = 1024

	// MaxLogBytes bounds one log line from a plugin (Events.Log, and each
	// line on its stderr): a longer one is cut there, with a marker. Lines
	// are read by people and shipped to the studio in batches; 8 KiB is
	// a long stack frame or error message, and what the studio's log
	// stream takes per entry.
	MaxLogBytes = 8 << 10

	// LogBurst and LogRate bound how many log lines per plugin the host
	// passes on (job log events and stderr lines together): LogBurst at
	// once, then LogRate a second. An engine logs a few lines per job
	// step at most; a plugin logging in a loop would otherwise flood the
	// supervisor's log, the journal and the studio's log stream. The
	// lines over the budget are dropped and counted; the next line that
	// passes is preceded by one saying how many were dropped.
	LogBurst = 500
	LogRate  = 50
)

// logRefill is the time one log token takes to come back.
const logRefill = time.Second / LogRate

// cutLine returns s cut to MaxLogBytes, with a marker saying how much was
// cut. It cuts on a UTF-8 boundary.
func cutLine(s string) string {
	return cutTo(s, MaxLogBytes)
}

// cutTo returns s cut to at most limit bytes (limit well above the
// marker's 40), with a marker saying how much was cut, on a UTF-8
// boundary.
func cutTo(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	n := limit - 40 // the marker takes at most 37 bytes
	for n > 0 && !isRuneStart(s[n]) {
		n--
	}
	return s[:n] + fmt.Sprintf(" … [%d bytes cut]", len(s)-n)
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// logBudget is the token bucket behind LogBurst and LogRate: one per
// plugin process, shared by its job log events and its stderr lines. It is
// a pure object: callers pass the time.
type logBudget struct {
	mu      sync.Mutex // guards all below
	tokens  int
	last    time.Time // when tokens were last refilled
	dropped int       // lines refused since the last one that passed
}

func newLogBudget() *logBudget { return &logBudget{tokens: LogBurst} }

// take reports whether a line may pass at now, and how many lines were
// dropped before it (to be reported first); dropped is reset when a line
// passes.
func (b *logBudget) take(now time.Time) (ok bool, dropped int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.last.IsZero() {
		b.last = now
	}
	if n := int(now.Sub(b.last) / logRefill); n > 0 {
		b.tokens = min(LogBurst, b.tokens+n)
		b.last = b.last.Add(time.Duration(n) * logRefill)
	}
	if b.tokens == 0 {
		b.dropped++
		return false, 0
	}
	b.tokens--
	dropped, b.dropped = b.dropped, 0
	return true, dropped
}

// flush returns the lines dropped since the last one that passed, and
// resets the count: the caller reports them once nothing more will come
// (the job or the process ended).
func (b *logBudget) flush() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := b.dropped
	b.dropped = 0
	return n
}

// droppedNotice is the line that reports dropped lines.
func droppedNotice(n int) string {
	return fmt.Sprintf("plugin log lines dropped: %d over the budget of %d at once and %d a second", n, LogBurst, LogRate)
}
