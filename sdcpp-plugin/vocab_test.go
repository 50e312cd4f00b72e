package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stokerhq/stoker/plugins"
)

func TestCheckVocabularies(t *testing.T) {
	dir := t.TempDir()
	unet := writeSafetensors(t, dir, "unet.safetensors", []stTensor{{Name: "model.diffusion_model.input_blocks.0.0.weight", Shape: []int{4, 4, 3, 3}}})
	diffusers := writeSafetensors(t, dir, "diffusers.safetensors", []stTensor{{Name: "down_blocks.0.resnets.0.conv1.weight", Shape: []int{4, 4, 3, 3}}})
	dit := writeSafetensors(t, dir, "flux.safetensors", []stTensor{{Name: "double_blocks.0.img_attn.qkv.weight", Shape: []int{12, 4}}})
	ckpt := filepath.Join(dir, "model.ckpt")
	if err := os.WriteFile(ckpt, []byte("PK\x03\x04 a pickle"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := []string{"t5", "qwen"}
	cases := []struct {
		name    string
		files   modelFiles
		missing []string
		refused bool
	}{
		{"complete build", modelFiles{DiffusionModel: dit, LLM: "/m/qwen.gguf"}, nil, false},
		{"UNet checkpoint", modelFiles{Model: unet}, missing, false},
		{"diffusers UNet", modelFiles{Model: diffusers}, missing, false},
		{"DiT needs T5", modelFiles{DiffusionModel: dit}, missing, true},
		{"LLM text encoder", modelFiles{DiffusionModel: unet, LLM: "/m/qwen.gguf"}, missing, true},
		{"unreadable format: the engine decides", modelFiles{Model: ckpt}, missing, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := checkVocabularies(&job{Key: contextKey{Files: c.files}}, c.missing)
			if !c.refused {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			// Retryable: a node with a complete build serves the job.
			expectKind(t, err, plugins.ErrEngine, "without the tokenizer vocabularies of t5, qwen")
		})
	}
}

func TestTensorNames(t *testing.T) {
	dir := t.TempDir()
	p := writeSafetensors(t, dir, "a.safetensors", []stTensor{{Name: "x.weight", Shape: []int{2, 2}}, {Name: "y.bias", Shape: []int{2}}})
	names, err := tensorNames(p)
	if err != nil || len(names) != 2 {
		t.Fatalf("names = %v, %v", names, err)
	}
	bad := filepath.Join(dir, "bad.safetensors")
	os.WriteFile(bad, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, '{'}, 0o644)
	if _, err := tensorNames(bad); err == nil {
		t.Error("a header size of 2^63 was read")
	}
}
