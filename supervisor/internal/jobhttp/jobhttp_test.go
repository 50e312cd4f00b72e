package jobhttp

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestDecodeJSON(t *testing.T) {
	type body struct {
		Prompt string `json:"prompt"`
	}
	cases := []struct {
		name, in string
		max      int64
		strict   bool
		wantErr  string // "" for none
	}{
		{"plain", `{"prompt":"a"}`, 64, true, ""},
		{"unknown field, lenient", `{"prompt":"a","user":"x"}`, 64, false, ""},
		{"unknown field, strict", `{"prompt":"a","user":"x"}`, 64, true, "unknown field"},
		{"trailing data", `{"prompt":"a"} {}`, 64, true, "data after the JSON value"},
		{"over the bound", `{"prompt":"` + strings.Repeat("a", 100) + `"}`, 64, true, "body over 64 bytes"},
		{"not JSON", `prompt=a`, 64, true, "not the expected JSON"},
		{"empty", ``, 64, true, "not the expected JSON"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var b body
			r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(c.in))
			err := DecodeJSON(httptest.NewRecorder(), r, &b, c.max, c.strict)
			switch {
			case c.wantErr == "" && err != nil:
				t.Fatalf("DecodeJSON = %v, want nil", err)
			case c.wantErr == "" && b.Prompt != "a":
				t.Fatalf("prompt %q, want a", b.Prompt)
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Fatalf("DecodeJSON = %v, want an error with %q", err, c.wantErr)
			}
		})
	}
}

func TestWriteJSON(t *testing.T) {
	w := httptest.NewRecorder()
	WriteJSON(w, http.StatusTeapot, map[string]string{"error": "<b>"})
	if w.Code != http.StatusTeapot {
		t.Errorf("status %d", w.Code)
	}
	for k, v := range map[string]string{"Content-Type": "application/json", "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"} {
		if got := w.Header().Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if got := w.Body.String(); got != "{\"error\":\"\\u003cb\\u003e\"}\n" {
		t.Errorf("body %q", got)
	}
	w = httptest.NewRecorder()
	WriteJSON(w, http.StatusOK, func() {}) // cannot be encoded
	if w.Code != http.StatusInternalServerError {
		t.Errorf("unencodable value answered %d, want 500", w.Code)
	}
}

func TestMediaType(t *testing.T) {
	for ext, want := range map[string]string{
		"png": "image/png", ".webp": "image/webp", "JPG": "image/jpeg", "wav": "audio/wav",
		"txt": "text/plain; charset=utf-8", "exe": "application/octet-stream", "": "application/octet-stream",
	} {
		if got := MediaType(ext); got != want {
			t.Errorf("MediaType(%q) = %q, want %q", ext, got, want)
		}
	}
}
