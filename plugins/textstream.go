package plugins

import (
	"strings"
	"unicode/utf8"
)

// TextStream sends an llm answer's text to the host as it is generated
// (see StreamText), for an engine that builds the answer by appending
// tokens: it sends only the part that is settled, holding back a tail
// that may still turn out to be the start of a stop string, or is an
// incomplete UTF-8 sequence (a token can end inside a character). When
// the request did not ask for text (RunRequest.StreamText), every method
// does nothing. It is used by one goroutine.
type TextStream struct {
	ev    Events
	stops []string
	on    bool
	sent  int // bytes of the text sent so far
}

// NewTextStream returns a TextStream for req's run; stops are the stop
// strings the engine cuts the answer at (empty ones are ignored).
func NewTextStream(req *RunRequest, ev Events, stops []string) *TextStream {
	s := &TextStream{ev: ev, on: req.StreamText}
	for _, st := range stops {
		if st != "" {
			s.stops = append(s.stops, st)
		}
	}
	return s
}

// Update takes the whole text generated so far and sends what is new and
// settled. text must extend what earlier calls were given.
func (s *TextStream) Update(text []byte) error {
	if !s.on {
		return nil
	}
	end := len(text) - s.hold(text)
	if end <= s.sent {
		return nil
	}
	piece := string(text[s.sent:end])
	s.sent = end
	return StreamText(s.ev, piece)
}

// Finish sends the rest of the final text: the generated text cut at the
// stop string where one ended it (never shorter than what was sent).
func (s *TextStream) Finish(text []byte) error {
	if !s.on || len(text) <= s.sent {
		return nil
	}
	piece := string(text[s.sent:])
	s.sent = len(text)
	return StreamText(s.ev, piece)
}

// hold is how many bytes at the end of text are not settled: the longest
// suffix that is a proper prefix of a stop string, or an incomplete UTF-8
// sequence, whichever is longer.
func (s *TextStream) hold(text []byte) int {
	n := 0
	for _, st := range s.stops {
		for k := min(len(st)-1, len(text)); k > n; k-- {
			if strings.HasPrefix(st, string(text[len(text)-k:])) {
				n = k
				break
			}
		}
	}
	// An incomplete character: its start byte is among the last 3.
	for k := 1; k <= 3 && k <= len(text); k++ {
		c := text[len(text)-k]
		if utf8.RuneStart(c) {
			if c >= utf8.RuneSelf && !utf8.FullRune(text[len(text)-k:]) {
				n = max(n, k)
			}
			break
		}
	}
	return n
}
