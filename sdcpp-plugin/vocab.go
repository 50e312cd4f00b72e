package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/stokerhq/stoker/llamacpp-plugin/gguf"
	"github.com/stokerhq/stoker/plugins"
)

// An engine built from an incomplete source (see scripts/engines/sdcpp.sh)
// has empty stand-ins for some tokenizer vocabularies. stable-diffusion.cpp
// would abort while building such a tokenizer, so the plugin refuses the
// models that need one before the engine sees them: any model with an LLM
// text encoder (Qwen, Mistral, Gemma, GPT-OSS tokenizers), and any model
// whose weights are not a UNet (the DiT families: Flux, SD3, Wan, ... take
// T5 or UMT5). The UNet families (SD 1.x/2.x, SDXL, SDXS) need only CLIP's
// vocabulary, which every build has.

// checkVocabularies refuses j when the engine lacks a vocabulary it needs.
// The error is retryable: a node with a complete build serves the job.
func checkVocabularies(j *job, missing []string) error {
	if len(missing) == 0 {
		return nil
	}
	lacks := func(what string) error {
		return plugins.Errorf(plugins.ErrEngine,
			"this node's stable-diffusion.cpp was built without the tokenizer vocabularies of %s, and %s; rebuild the engine from a complete source (docs/sdcpp.md)",
			strings.Join(missing, ", "), what)
	}
	if j.Key.Files.LLM != "" || j.Key.Files.LLMVision != "" {
		return lacks("the model's LLM text encoder needs one of them")
	}
	path := j.Key.Files.DiffusionModel
	if path == "" {
		path = j.Key.Files.Model
	}
	names, err := tensorNames(path)
	if err != nil {
		return nil // not a format read here (.ckpt): the engine decides
	}
	for _, n := range names {
		if strings.Contains(n, "input_blocks.") || strings.Contains(n, "down_blocks.") {
			return nil // a UNet: CLIP conditioning
		}
	}
	return lacks("the model is not a UNet (CLIP) model, so it may need T5, UMT5 or an LLM tokenizer")
}

// maxSafetensorsHeader bounds the JSON header read from a .safetensors file.
const maxSafetensorsHeader = 256 << 20

// tensorNames lists the tensor names of a GGUF or safetensors file.
func tensorNames(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := bufio.NewReader(f)
	magic, err := r.Peek(4)
	if err != nil {
		return nil, err
	}
	if string(magic) == "GGUF" {
		h, err := gguf.ReadHeader(io.LimitReader(r, 1<<30))
		if err != nil {
			return nil, err
		}
		names := make([]string, len(h.Tensors))
		for i, t := range h.Tensors {
			names[i] = t.Name
		}
		return names, nil
	}
	// safetensors: a little-endian u64 header size, then a JSON object of
	// tensor name -> description (and "__metadata__").
	var n uint64
	if err := binary.Read(r, binary.LittleEndian, &n); err != nil {
		return nil, err
	}
	if n < 2 || n > maxSafetensorsHeader {
		return nil, errors.New("not a safetensors file")
	}
	head := make([]byte, n)
	if _, err := io.ReadFull(r, head); err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(head, &m); err != nil {
		return nil, fmt.Errorf("not a safetensors file: %w", err)
	}
	names := make([]string, 0, len(m))
	for k := range m {
		if k != "__metadata__" {
			names = append(names, k)
		}
	}
	return names, nil
}
