//go:build llamacpp

package main

import (
	"testing"

	"github.com/stokerhq/stoker/llamacpp-plugin/gguf"
)

// TestPluginCheckLlamaCpp: the llama.cpp plugin conforms, and generates on
// the tiny llama.
func TestPluginCheckLlamaCpp(t *testing.T) {
	t.Parallel()
	checkEngine(t, "llamacpp-plugin", "llamacpp", "tiny-llama.gguf", gguf.WriteTinyLlama, "llm", "a ")
}
