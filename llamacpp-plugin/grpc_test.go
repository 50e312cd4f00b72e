package main

import (
	"testing"

	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/plugins/plugintest"
)

// TestConformance runs the SDK's conformance kit over real in-process gRPC,
// with the bad-input cases that must fail the same way in every build.
func TestConformance(t *testing.T) {
	path := writeTiny(t, t.TempDir())
	e := newEngine(nil)
	t.Cleanup(e.Close)
	empty := llmRequest("tiny-llama", path)
	schema := llmRequest("tiny-llama", path, "hi")
	schema.Task.LLM.JSONSchema = []byte(`{"not":{}}`)
	badInput := func(t *testing.T, r *plugintest.Recorder, err error) {
		je := plugins.AsJobError(err)
		if je == nil || je.Kind != plugins.ErrBadInput || je.Retryable() {
			t.Errorf("got %v, want a non-retryable %s", err, plugins.ErrBadInput)
		}
		if r.JSON() != nil {
			t.Errorf("failed job reported a result %s", r.JSON())
		}
	}
	plugintest.Conformance(t, plugintest.Connect(t, e),
		plugintest.Case{Name: "empty messages", Req: *empty, Check: badInput},
		plugintest.Case{Name: "inexpressible schema", Req: *schema, Check: badInput},
	)
}
