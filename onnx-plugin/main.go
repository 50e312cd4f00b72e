// Command onnx-plugin is stoker's ONNX Runtime engine plugin: it serves
// image jobs whose engine is "onnx" (spec §6.4, §6.5), LaMa object removal:
// a `model`-role .onnx file, an init image and a mask, the masked region
// filled in. ONNX Runtime is opened in-process at run time through
// github.com/yalue/onnxruntime_go, and loaded models stay resident between
// jobs. The supervisor launches it; run by hand it prints go-plugin's
// notice and exits.
//
// Build it with the onnx tag after scripts/install-engines.sh (see
// docs/onnx.md); without the tag it builds, and reports itself not ready.
//
// Settings come from the environment: STOKER_ONNX_LIBRARY (the ONNX
// Runtime library to open; default: the one scripts/engines/onnx.sh
// registered in the engines cache), STOKER_ONNX_PROVIDER (cpu, or cuda for
// a farm's CUDA build), STOKER_ONNX_THREADS (intra-op threads,
// default ONNX Runtime's) and STOKER_ONNX_MEMORY_BUDGET_MB (resident
// models, default 8 GiB).
//
// Subpackage lamamodel writes tiny-lama, the small model with LaMa's
// signature that the tests and `stoker agent -dev` use.
package main

import (
	"os"

	"github.com/stokerhq/stoker/plugins"
)

func main() {
	log := plugins.NewLogger("onnx")
	opt, err := optionsFromEnv(os.Getenv)
	if err != nil {
		log.Error("ignoring malformed settings", "error", err)
		opt, _ = optionsFromEnv(func(string) string { return "" })
	}
	plugins.Serve(newEngine(log, opt))
}
