// Command llamacpp-plugin is stoker's llama.cpp engine plugin: it serves
// llm jobs (engine id "llama-cpp") on libllama, linked in-process through
// cgo, keeping models resident between jobs. The supervisor launches it;
// run by hand it prints go-plugin's notice and exits.
//
// Build it with the llamacpp tag after scripts/install-engines.sh and
// `source scripts/engines/env.sh` (see docs/engines.md); without the tag it
// builds, and reports itself not ready.
package main

import "github.com/stokerhq/stoker/plugins"

func main() {
	e := newEngine(plugins.NewLogger("llamacpp"))
	plugins.Serve(e)
}
