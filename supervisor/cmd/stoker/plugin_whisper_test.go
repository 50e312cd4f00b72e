//go:build whispercpp

package main

import (
	"testing"

	"github.com/stokerhq/stoker/whisper-plugin/ggmlmodel"
)

// TestPluginCheckWhisper: the whisper.cpp plugin conforms, and transcribes
// the sample audio with the tiny whisper.
func TestPluginCheckWhisper(t *testing.T) {
	t.Parallel()
	checkEngine(t, "whisper-plugin", "whispercpp", "tiny-whisper.bin", ggmlmodel.WriteTinyWhisper, "audio_stt", "a ")
}
