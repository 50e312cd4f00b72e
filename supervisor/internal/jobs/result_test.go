package jobs

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/supervisor/internal/protocol"
	"github.com/stokerhq/stoker/supervisor/internal/studio"
)

// tooBigReporter refuses every JSON result as over the frame limit, as
// studio.Reporter does for a completeJson frame over MaxSendFrameBytes.
type tooBigReporter struct{ *reporter }

func (r tooBigReporter) CompleteJSON(context.Context, json.RawMessage, string) error {
	return &studio.FrameTooLargeError{Type: protocol.TypeCompleteJSON, Size: 40 << 20, Limit: 16 << 20}
}

// TestJSONResultOverFrameLimitFailsForGood: a JSON result the studio would
// refuse from any node (over the frame limit) fails its job non-retryable,
// with the reason, instead of leaving the studio to see a dead socket.
func TestJSONResultOverFrameLimitFailsForGood(t *testing.T) {
	rep := tooBigReporter{&reporter{}}
	r := newRunner(t, fakeEngines{run: func(_ context.Context, _ *plugins.RunRequest, ev plugins.Events) error {
		return ev.Result([]byte(`{"text":"big"}`))
	}}, fakeModels{})
	r.RunJob(context.Background(), claim(protocol.KindLLM), rep)
	if len(rep.fails) != 1 || rep.retry[0] || !strings.Contains(rep.fails[0], "frame limit") || !strings.Contains(rep.fails[0], "any node") {
		t.Errorf("fails %q retryable %v; want one non-retryable fail naming the frame limit", rep.fails, rep.retry)
	}
}
