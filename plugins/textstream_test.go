package plugins_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/plugins/plugintest"
)

// TestTextStream: the pieces sent, joined, are the final text; a stop
// string's start and a split character are held back until settled; no
// piece is sent when the request did not ask.
func TestTextStream(t *testing.T) {
	tests := []struct {
		name   string
		tokens []string
		stops  []string
		final  string // the engine's text cut at its stop
		want   []string
	}{
		{"plain", []string{"Hel", "lo", " world"}, nil, "Hello world", []string{"Hel", "lo", " world"}},
		{"stop held back then cut", []string{"one", " ST", "OP", " two"}, []string{"STOP"}, "one ", []string{"one", " "}},
		{"false stop start released", []string{"one", " ST", "AR"}, []string{"STOP"}, "one STAR", []string{"one", " ", "STAR"}},
		{"split character", []string{"caf", "\xc3", "\xa9!"}, nil, "café!", []string{"caf", "é!"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rec plugintest.Recorder
			ts := plugins.NewTextStream(&plugins.RunRequest{StreamText: true}, &rec, tt.stops)
			var text []byte
			for _, tok := range tt.tokens {
				text = append(text, tok...)
				if strings.HasPrefix(string(text), tt.final) && len(text) > len(tt.final) && strings.Contains(string(text), "STOP") {
					break
				}
				if err := ts.Update(text); err != nil {
					t.Fatal(err)
				}
			}
			if err := ts.Finish([]byte(tt.final)); err != nil {
				t.Fatal(err)
			}
			got := rec.Texts()
			if strings.Join(got, "") != tt.final {
				t.Errorf("joined: got %q, want %q", strings.Join(got, ""), tt.final)
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("pieces: got %q, want %q", got, tt.want)
			}
		})
	}
	t.Run("not asked", func(t *testing.T) {
		var rec plugintest.Recorder
		ts := plugins.NewTextStream(&plugins.RunRequest{}, &rec, nil)
		ts.Update([]byte("abc"))
		ts.Finish([]byte("abcd"))
		if got := rec.Texts(); len(got) != 0 {
			t.Errorf("got pieces %q for a request that did not ask", got)
		}
	})
}

// TestStreamTextInvalidUTF8: a byte outside valid UTF-8 becomes U+FFFD,
// one per byte, as encoding/json writes it into the result.
func TestStreamTextInvalidUTF8(t *testing.T) {
	var rec plugintest.Recorder
	raw := "a\xffb\xc3(\xe2\x82"
	if err := plugins.StreamText(&rec, raw); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(raw)
	var want string
	json.Unmarshal(b, &want)
	if got := strings.Join(rec.Texts(), ""); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
