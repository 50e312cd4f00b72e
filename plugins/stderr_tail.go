package plugins

import (
	"bytes"
	"regexp"
	"sync"
)

// stderrTail keeps the last lines a plugin wrote to stderr, for crash
// reports. It is an io.Writer fed by go-plugin's stderr reader.
type stderrTail struct {
	mu    sync.Mutex // guards all below
	lines []string   // ring of at most max lines
	next  int        // index the next line goes to once the ring is full
	part  []byte     // an unterminated line
	max   int
	// headline is the first line that announced a crash ("panic: ...",
	// "fatal error: ...", "SIGSEGV: segmentation violation"): a crashing
	// Go plugin prints a long goroutine dump after it, which would push
	// the cause out of the kept tail.
	headline string
	// crash holds the lines up to and including the headline, as the ring
	// held them then, plus crashAfter lines that follow it: the cause,
	// without the goroutine dump a Go runtime prints after it.
	crash      []string
	crashAfter int
	// signal is the signal a Go runtime report names on its "[signal
	// SIGSEGV: ...]" line, which follows "fatal error: unexpected signal"
	// when a fault hits C code.
	signal string
}

// crashHeadline matches the line a Go runtime or a C library prints when
// the process is about to die.
var crashHeadline = regexp.MustCompile(`^(panic: |fatal error: |SIG[A-Z]+: |Segmentation fault|Aborted|terminate called)`)

// runtimeSignal matches the Go runtime's "[signal SIGSEGV: segmentation
// violation code=... addr=0x0 pc=...]" line.
var runtimeSignal = regexp.MustCompile(`^\[signal (SIG[A-Z]+)`)

// maxLineBytes bounds one kept line so a plugin printing megabytes without
// a newline cannot grow the supervisor's memory.
const maxLineBytes = 1024

func newStderrTail(max int) *stderrTail { return &stderrTail{max: max} }

func (t *stderrTail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			t.part = appendBounded(t.part, p)
			break
		}
		t.part = appendBounded(t.part, p[:i])
		t.pushLocked(string(t.part))
		t.part = t.part[:0]
		p = p[i+1:]
	}
	return n, nil
}

func appendBounded(dst, p []byte) []byte {
	if room := maxLineBytes - len(dst); len(p) > room {
		p = p[:max(room, 0)]
	}
	return append(dst, p...)
}

func (t *stderrTail) pushLocked(line string) {
	if line == "" {
		return
	}
	if len(t.lines) < t.max {
		t.lines = append(t.lines, line)
	} else {
		t.lines[t.next] = line
		t.next = (t.next + 1) % t.max
	}
	if t.crashAfter > 0 {
		t.crash = append(t.crash, line)
		t.crashAfter--
	}
	if t.headline == "" && crashHeadline.MatchString(line) {
		t.headline = line
		t.crash = t.ringLocked()
		t.crashAfter = linesAfterHeadline
	}
	if t.signal == "" {
		if m := runtimeSignal.FindStringSubmatch(line); m != nil {
			t.signal = m[1]
		}
	}
}

// Lines returns the kept lines, oldest first, including a final
// unterminated line.
func (t *stderrTail) Lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.linesLocked()
}

// linesAfterHeadline is how many lines after a crash headline belong to
// the cause (the runtime's "[signal ...]", "PC=...", "signal arrived
// during cgo execution", or the panicking goroutine's first frame).
const linesAfterHeadline = 3

// ringLocked returns the complete lines, oldest first.
func (t *stderrTail) ringLocked() []string {
	out := make([]string, 0, len(t.lines)+1)
	out = append(out, t.lines[t.next:]...)
	return append(out, t.lines[:t.next]...)
}

// CrashLines returns the lines that explain a crash: when a crash headline
// was seen, the lines up to it and the few after it (so a long goroutine
// dump cannot push the cause out); otherwise the plain tail.
func (t *stderrTail) CrashLines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.headline == "" {
		return t.linesLocked()
	}
	return append([]string(nil), t.crash...)
}

func (t *stderrTail) linesLocked() []string {
	out := t.ringLocked()
	if len(t.part) > 0 {
		out = append(out, string(t.part))
	}
	return out
}

// Headline returns the first crash line seen, or "".
func (t *stderrTail) Headline() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.headline
}

// Signal returns the signal named by a Go runtime "[signal ...]" line, or "".
func (t *stderrTail) Signal() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.signal
}
