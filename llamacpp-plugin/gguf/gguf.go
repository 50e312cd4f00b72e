// Package gguf reads and writes GGUF files, the model format of llama.cpp and
// ggml, in pure Go (no cgo), and generates the tiny test model the plugin's
// tests and the supervisor's -dev mode use (see [WriteTinyLlama]).
//
// Only what stoker needs is here: a writer for metadata and F32, F16 and
// Q8_0 tensors (with the encoders of their data, see [AppendF16] and
// [AppendQ8_0]), and a reader for the header, metadata and tensor table (never tensor
// data). The reader bounds every count and length so a hostile or corrupt
// file fails with an error instead of exhausting memory.
//
// Any package may import gguf; it has no dependencies beyond the standard
// library.
package gguf

import (
	"errors"
	"fmt"
	"io"
)

// Magic is the first four bytes of every GGUF file.
const Magic = "GGUF"

// Version is the GGUF version the writer produces (the reader accepts 2 and 3).
const Version = 3

// DefaultAlignment is the tensor data alignment when general.alignment is
// absent.
const DefaultAlignment = 32

// ErrNotGGUF is returned (wrapped) by the reader when the input does not
// start with the GGUF magic.
var ErrNotGGUF = errors.New("not a GGUF file")

// ValueType is the type tag of a metadata value.
type ValueType uint32

// Metadata value types of the GGUF specification.
const (
	TypeUint8   ValueType = 0
	TypeInt8    ValueType = 1
	TypeUint16  ValueType = 2
	TypeInt16   ValueType = 3
	TypeUint32  ValueType = 4
	TypeInt32   ValueType = 5
	TypeFloat32 ValueType = 6
	TypeBool    ValueType = 7
	TypeString  ValueType = 8
	TypeArray   ValueType = 9
	TypeUint64  ValueType = 10
	TypeInt64   ValueType = 11
	TypeFloat64 ValueType = 12
)

// TensorType is a ggml tensor element type. Only the types the writer
// supports are named; the reader reports others by number.
type TensorType uint32

// Tensor element types the writer supports.
const (
	TensorF32  TensorType = 0
	TensorF16  TensorType = 1
	TensorQ8_0 TensorType = 8
)

// Q8_0 stores blocks of Q8_0Block elements along the first dimension, each
// an F16 scale and Q8_0Block signed bytes (ggml's block_q8_0).
const (
	Q8_0Block      = 32
	q8_0BlockBytes = 2 + Q8_0Block
)

// DataSize returns the bytes of data of t's dimensions and type, or an error
// for a type the writer does not support or a Q8_0 tensor whose first
// dimension is not a whole number of blocks.
func (t *Tensor) DataSize() (uint64, error) {
	switch t.Type {
	case TensorF32:
		return 4 * t.Elements(), nil
	case TensorF16:
		return 2 * t.Elements(), nil
	case TensorQ8_0:
		if len(t.Dims) == 0 || t.Dims[0]%Q8_0Block != 0 {
			return 0, fmt.Errorf("gguf: tensor %q: Q8_0 needs a first dimension that is a multiple of %d, got %v", t.Name, Q8_0Block, t.Dims)
		}
		return t.Elements() / Q8_0Block * q8_0BlockBytes, nil
	}
	return 0, fmt.Errorf("gguf: tensor %q: type %d not supported by the writer", t.Name, t.Type)
}

// KV is one metadata entry. Value is one of uint8, int8, uint16, int16,
// uint32, int32, float32, bool, string, uint64, int64, float64, or a slice of
// one of those ([]string, []float32, []int32...); the reader produces the
// same Go types.
type KV struct {
	Key   string
	Value any
}

// Tensor is one tensor: its name, its dimensions with the fastest-varying
// first (ggml's ne[0], ne[1]...), its element type and, for the writer, its
// little-endian data, held in Data or produced by Stream.
type Tensor struct {
	Name string
	Dims []uint64
	Type TensorType
	// Offset is the data offset relative to the start of the data section
	// (set by the reader; computed by the writer).
	Offset uint64
	Data   []byte
	// Stream, when Data is nil, writes the tensor's data to w while the
	// file is written, so a large model need not be held in memory. It
	// must write exactly DataSize bytes; the writer fails otherwise.
	Stream func(w io.Writer) error
}

// Elements returns the number of elements of t.
func (t *Tensor) Elements() uint64 {
	n := uint64(1)
	for _, d := range t.Dims {
		n *= d
	}
	return n
}
