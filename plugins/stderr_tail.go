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
}

// crashHeadline matches the line a Go runtime or a C library prints when
// the process is about to die.
var crashHeadline = regexp.MustCompile(`^(panic: |fatal error: |SIG[A-Z]+: |Segmentation fault|Aborted|terminate called)`)

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
	if t.headline == "" && crashHeadline.MatchString(line) {
		t.headline = line
	}
	if len(t.lines) < t.max {
		t.lines = append(t.lines, line)
		return
	}
	t.lines[t.next] = line
	t.next = (t.next + 1) % t.max
}

// Lines returns the kept lines, oldest first, including a final
// unterminated line.
func (t *stderrTail) Lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]string, 0, len(t.lines)+1)
	out = append(out, t.lines[t.next:]...)
	out = append(out, t.lines[:t.next]...)
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
