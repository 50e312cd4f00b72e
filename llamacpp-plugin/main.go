// Command llamacpp-plugin is stoker's llama.cpp engine plugin: it serves
// llm jobs (engine id "llama-cpp") on libllama, linked in-process through
// cgo, keeping models resident between jobs. The supervisor launches it;
// run by hand it prints go-plugin's notice and exits.
//
// Build it with the llamacpp tag after scripts/install-engines.sh and
// `source scripts/engines/env.sh` (see docs/engines.md); without the tag it
// builds, and reports itself not ready.
//
// Environment: STOKER_LLAMA_THREADS sets the CPU threads llama.cpp decodes
// with (default: the number of CPUs less one, at least one).
// STOKER_LLAMA_GPU_LAYERS sets how many of a model's layers go to the GPU
// when the libraries have one (scripts/engines/llama-gpu.sh): default all
// (-1); 0 keeps the model on the CPU. Which GPU is the agent's `gpu` setting
// (GGML_VK_VISIBLE_DEVICES, CUDA_VISIBLE_DEVICES; docs/operations.md).
package main

import (
	"os"
	"strconv"

	"github.com/stokerhq/stoker/plugins"
)

func main() {
	plugins.QuietGGMLAborts()
	log := plugins.NewLogger("llamacpp")
	e := newEngine(log)
	if v := os.Getenv("STOKER_LLAMA_THREADS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			log.Warn("ignoring STOKER_LLAMA_THREADS: want a positive integer", "value", v)
		} else {
			e.threads = n
		}
	}
	if v := os.Getenv("STOKER_LLAMA_GPU_LAYERS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			log.Warn("ignoring STOKER_LLAMA_GPU_LAYERS: want an integer (negative: all layers)", "value", v)
		} else {
			e.gpuLayers = n
		}
	}
	plugins.Serve(e)
}
