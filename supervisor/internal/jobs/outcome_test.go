package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/supervisor/internal/protocol"
	"github.com/stokerhq/stoker/supervisor/internal/studio"
)

// deadReporter fails every send, as a Reporter whose session ended does.
type deadReporter struct{ *reporter }

func (deadReporter) CompleteJSON(context.Context, json.RawMessage, string) error {
	return studio.ErrSessionClosed
}
func (deadReporter) Fail(context.Context, string, bool) error { return studio.ErrSessionClosed }

// TestRunJobReturnsTheOutcome: what RunJob returns is what it reported,
// for a completed job, a binary result, a failure and an outcome that
// could not be sent.
func TestRunJobReturnsTheOutcome(t *testing.T) {
	jsonOK := func(_ context.Context, _ *plugins.RunRequest, ev plugins.Events) error {
		return ev.Result([]byte(`{"text":"hi"}`))
	}
	png := func(_ context.Context, _ *plugins.RunRequest, ev plugins.Events) error {
		return ev.Output("png", []byte("0123456789"))
	}
	final := func(context.Context, *plugins.RunRequest, plugins.Events) error {
		return plugins.Errorf(plugins.ErrBadInput, "no")
	}
	tests := []struct {
		name string
		run  func(context.Context, *plugins.RunRequest, plugins.Events) error
		kind protocol.TaskKind
		rep  studio.Reporter
		want studio.Outcome // Err and ReportErr compared as set or not
	}{
		{"json completed", jsonOK, protocol.KindLLM, &reporter{}, studio.Outcome{Reported: true}},
		{"binary completed", png, protocol.KindImage, &reporter{}, studio.Outcome{Reported: true, ResultBytes: 10}},
		{"failed for good", final, protocol.KindLLM, &reporter{}, studio.Outcome{Err: errTestSet, Reported: true}},
		{"result not sent", jsonOK, protocol.KindLLM, deadReporter{&reporter{}}, studio.Outcome{ReportErr: errTestSet}},
		{"fail not sent", final, protocol.KindLLM, deadReporter{&reporter{}}, studio.Outcome{Err: errTestSet, ReportErr: errTestSet}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := newRunner(t, fakeEngines{run: tt.run}, fakeModels{}).RunJob(context.Background(), claim(tt.kind), tt.rep)
			if (got.Err != nil) != (tt.want.Err != nil) || (got.ReportErr != nil) != (tt.want.ReportErr != nil) ||
				got.Reported != tt.want.Reported || got.Retryable != tt.want.Retryable || got.ResultBytes != tt.want.ResultBytes {
				t.Errorf("outcome %+v, want %+v", got, tt.want)
			}
			if got.Err != nil && plugins.AsJobError(got.Err).Kind != plugins.ErrBadInput {
				t.Errorf("outcome error %v, want the job's typed error", got.Err)
			}
		})
	}
}

var errTestSet = errors.New("set")
