// Command whisper-plugin is stoker's whisper.cpp engine plugin: it serves
// audio_stt jobs (engine id "whisper-cpp", this project's extension of spec
// §6.3) on libwhisper, linked in-process through cgo, keeping models
// resident between jobs. The supervisor launches it; run by hand it prints
// go-plugin's notice and exits.
//
// Build it with the whispercpp tag after scripts/install-engines.sh and
// `source scripts/engines/env.sh` (see docs/whisper.md); without the tag it
// builds, and reports itself not ready.
//
// Subpackages: wav decodes and resamples the input audio; ggmlmodel writes
// the tiny random-weight model the tests and `stoker agent -dev` use.
package main

import "github.com/stokerhq/stoker/plugins"

func main() {
	plugins.QuietGGMLAborts()
	// Serve never returns: the process ends when the supervisor kills it,
	// and the models go with it.
	plugins.Serve(newEngine(plugins.NewLogger("whisper"), options{}))
}
