package studio

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

type codedErr struct{ code protocol.RejectCode }

func (e codedErr) Error() string                   { return "engine briefly unavailable" }
func (e codedErr) RejectCode() protocol.RejectCode { return e.code }

// TestRejectCodeOf: an Admit error that carries a reject code (wrapped or
// not) gives the reject that code; any other error none.
func TestRejectCodeOf(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want protocol.RejectCode
	}{
		{"plain", errors.New("engine x is not ready"), ""},
		{"coded", codedErr{protocol.RejectBusy}, protocol.RejectBusy},
		{"wrapped", fmt.Errorf("admit: %w", codedErr{protocol.RejectBusy}), protocol.RejectBusy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := rejectCodeOf(tt.err); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
