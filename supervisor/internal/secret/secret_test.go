package secret

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestValueNeverPrints(t *testing.T) {
	const tok = "7c1e0f9a-super-secret-token"
	s := New(tok)
	js, err := json.Marshal(struct{ T Value }{s})
	if err != nil {
		t.Fatal(err)
	}
	outs := []string{
		fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s %q", s, s, s, s, s),
		fmt.Sprintf("%v", struct{ T Value }{s}), fmt.Sprintf("%#v", struct{ T Value }{s}),
		fmt.Errorf("dial: %v", s).Error(), errors.New(s.String()).Error(), string(js),
	}
	for _, out := range outs {
		if strings.Contains(out, tok) {
			t.Errorf("got %q, want the token redacted", out)
		}
	}
	if got := s.Reveal(); got != tok {
		t.Errorf("Reveal() = %q, want %q", got, tok)
	}
	if New("").IsZero() != true || s.IsZero() {
		t.Error("IsZero wrong")
	}
}
