package main

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// stTensor is one f32 tensor of a test .safetensors file, shape in torch
// order; Data (nil: zeros) holds its values.
type stTensor struct {
	Name  string
	Shape []int
	Data  []float32
}

// writeSafetensors writes a .safetensors file of f32 tensors into dir and
// returns its path.
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
	b = append(b, h...)
	for _, ts := range tensors {
		n := 1
		for _, d := range ts.Shape {
			n *= d
		}
		for i := range n {
			var v float32
			if i < len(ts.Data) {
				v = ts.Data[i]
			}
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
		}
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
