// Command sdcpp-plugin is stoker's stable-diffusion.cpp engine plugin: it
// serves image jobs (engine id "sd-cpp", spec §6.5) on libstable-diffusion,
// linked in-process through cgo, keeping loaded models resident between
// jobs. The supervisor launches it; run by hand it prints go-plugin's
// notice and exits.
//
// Build it with the sdcpp tag after scripts/install-engines.sh and
// `source scripts/engines/env.sh` (see docs/sdcpp.md); without the tag it
// builds, and reports itself not ready.
//
// Settings come from the environment (the supervisor passes no
// configuration to plugins): STOKER_SDCPP_THREADS (default: the physical
// cores), STOKER_SDCPP_MEMORY_BUDGET_MB (resident models, default 24 GiB),
// STOKER_SDCPP_MAX_SIDE and STOKER_SDCPP_MAX_PIXEL_STEPS (the largest job
// it takes; see limits).
//
// Subpackage sdmodel writes the tiny random-weight model the tests and
// `stoker agent -dev` use.
package main

import (
	"os"

	"github.com/stokerhq/stoker/plugins"
)

func main() {
	plugins.QuietGGMLAborts()
	log := plugins.NewLogger("sdcpp")
	opt, err := optionsFromEnv(os.Getenv)
	if err != nil {
		// A setting the operator got wrong: say so and serve with the
		// defaults rather than leave the node without images.
		log.Error("ignoring malformed settings", "error", err)
		opt, _ = optionsFromEnv(func(string) string { return "" })
	}
	// Serve never returns: the process ends when the supervisor kills it,
	// and the models go with it.
	plugins.Serve(newEngine(log, opt))
}
