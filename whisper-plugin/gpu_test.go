//go:build whispercpp

package main

import (
	"context"
	"os"
	"testing"
)

// TestGPUBackend checks the device the plugin's libraries give it: the CPU
// for the build the engine scripts install, or STOKER_TEST_GPU's backend
// for libwhisper built against a GPU ggml (the plugin loads ggml's backend
// modules as the llama plugin does, internal/ggmlload), with the device's
// name and memory. No such build is installed or tested in CI: on Mesa's
// lavapipe one 5 s clip of TestParityWithWhisperCLI took over 3 minutes on
// the shared CI machine (docs/whisper.md).
func TestGPUBackend(t *testing.T) {
	want := os.Getenv("STOKER_TEST_GPU")
	if want == "" {
		want = "cpu"
	}
	d, err := testEngine(t).Describe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("device: backend %q, name %q, memory %d of %d bytes free", d.Device.Backend, d.Device.Name, d.Device.MemoryFree, d.Device.MemoryTotal)
	if d.Device.Backend != want {
		t.Fatalf("backend %q (device %q), want %q: is the device visible (GGML_VK_VISIBLE_DEVICES for a CPU-type Vulkan device such as lavapipe)?", d.Device.Backend, d.Device.Name, want)
	}
	if want != "cpu" && (d.Device.Name == "" || d.Device.MemoryTotal == 0) {
		t.Errorf("device %+v: want its name and memory", d.Device)
	}
}
