//go:build llamacpp

package main

import (
	"context"
	"os"
	"slices"
	"testing"
)

// TestGPUBackend checks the device the plugin's libraries give it. With
// STOKER_TEST_GPU=vulkan or cuda (scripts/test.sh sets vulkan for its run on
// the libraries of `STOKER_GPU=vulkan scripts/install-engines.sh`, with
// Mesa's lavapipe as the device), Describe must report that backend with
// the device's name and memory, a model must load with every layer on the
// GPU, and its greedy tokens must equal the same model's on the CPU (the
// same libraries with STOKER_LLAMA_GPU_LAYERS=0); TestParityWithLlamaSimple
// then compares the GPU's text with the CPU build's llama-simple. Without
// it, the libraries are the CPU build: Describe says cpu and nothing is
// offloaded.
func TestGPUBackend(t *testing.T) {
	want := os.Getenv("STOKER_TEST_GPU")
	e := testEngine(t)
	d, err := e.Describe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("device: backend %q, name %q, memory %d of %d bytes free", d.Device.Backend, d.Device.Name, d.Device.MemoryFree, d.Device.MemoryTotal)
	path := writeTiny(t, t.TempDir())
	if want == "" || want == "cpu" {
		if d.Device.Backend != "cpu" {
			t.Fatalf("backend %q, want cpu (set STOKER_TEST_GPU for a GPU build)", d.Device.Backend)
		}
		m, err := loadModel(context.Background(), path, -1, e.log)
		if err != nil {
			t.Fatal(err)
		}
		defer m.free()
		if m.offloaded != 0 {
			t.Errorf("CPU build offloaded %d/%d layers", m.offloaded, m.layers)
		}
		return
	}
	if d.Device.Backend != want {
		t.Fatalf("backend %q (device %q), want %q: is the device visible (GGML_VK_VISIBLE_DEVICES for a CPU-type Vulkan device such as lavapipe)?", d.Device.Backend, d.Device.Name, want)
	}
	if d.Device.Name == "" || d.Device.MemoryTotal == 0 {
		t.Errorf("device %+v: want its name and memory", d.Device)
	}

	gpu, err := loadModel(context.Background(), path, -1, e.log)
	if err != nil {
		t.Fatal(err)
	}
	gpu.free()
	if gpu.layers == 0 || gpu.offloaded != gpu.layers {
		t.Fatalf("offloaded %d/%d layers, want all", gpu.offloaded, gpu.layers)
	}
	cpuEngine := testEngine(t)
	cpuEngine.gpuLayers = 0
	cpu, err := loadModel(context.Background(), path, 0, e.log)
	if err != nil {
		t.Fatal(err)
	}
	cpu.free()
	if cpu.offloaded != 0 {
		t.Fatalf("STOKER_LLAMA_GPU_LAYERS=0 offloaded %d/%d layers, want none", cpu.offloaded, cpu.layers)
	}

	equal, total := 0, 0
	for _, prompt := range []string{tinyChatPrompt, "Hello my name is", "The quick brown fox"} {
		const n = 48
		_, gpuText, gpuTokens := generateRaw(t, e, path, prompt, n)
		_, cpuText, cpuTokens := generateRaw(t, cpuEngine, path, prompt, n)
		total += len(cpuTokens)
		for i := range min(len(gpuTokens), len(cpuTokens)) {
			if gpuTokens[i] != cpuTokens[i] {
				break
			}
			equal++
		}
		if !slices.Equal(gpuTokens, cpuTokens) {
			t.Errorf("prompt %q:\n%s %q\ncpu    %q", prompt, want, gpuText, cpuText)
		}
	}
	t.Logf("greedy tokens on %s (%s) equal to the CPU's: %d of %d", want, d.Device.Name, equal, total)
}
