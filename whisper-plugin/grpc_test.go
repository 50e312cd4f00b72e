package main

import (
	"path/filepath"
	"testing"

	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/plugins/plugintest"
	"github.com/stokerhq/stoker/whisper-plugin/wav"
)

// TestConformance runs the SDK's conformance kit over real in-process gRPC,
// with bad-input cases that fail the same way in every build.
func TestConformance(t *testing.T) {
	dir := t.TempDir()
	e := testEngine(t)
	clip := writeWAV(t, dir, "clip.wav", wav.Format{Encoding: wav.PCM, Channels: 1, SampleRate: 16000, BitsPerSample: 16}, speechish(1, 16000, 1))
	model := filepath.Join(dir, "model.bin")
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
		plugintest.Case{Name: "bad timestamps", Req: *sttRequest(model, clip, plugins.STTTask{Timestamps: "frames"}), Check: badInput},
		plugintest.Case{Name: "not a wav", Req: *sttRequest(model, model+".missing-but-named.wav", plugins.STTTask{}), Check: func(t *testing.T, r *plugintest.Recorder, err error) {
			if je := plugins.AsJobError(err); je == nil || je.Kind != plugins.ErrEngine {
				t.Errorf("got %v, want %s (the supervisor's input file is gone)", err, plugins.ErrEngine)
			}
		}},
		plugintest.Case{Name: "no model", Req: func() plugins.RunRequest { r := sttRequest(model, clip, plugins.STTTask{}); r.Files = nil; return *r }(), Check: badInput},
	)
}
