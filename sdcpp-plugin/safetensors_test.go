package main

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// stTensor is one f32 tensor of a test .safetensors file, shape in torch
// order; its values are zero.
type stTensor struct {
	Name  string
	Shape []int
}

// writeSafetensors writes a .safetensors file of zero-valued f32 tensors
// into dir and returns its path.
func writeSafetensors(t testing.TB, dir, name string, tensors []stTensor) string {
	t.Helper()
	header := map[string]any{"__metadata__": map[string]string{"format": "pt"}}
	off := 0
	for _, ts := range tensors {
		n := 4
		for _, d := range ts.Shape {
			n *= d
		}
		header[ts.Name] = map[string]any{"dtype": "F32", "shape": ts.Shape, "data_offsets": []int{off, off + n}}
		off += n
	}
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	for len(h)%8 != 0 {
		h = append(h, ' ')
	}
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(h)))
	b = append(append(b, h...), make([]byte, off)...)
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
