package gguf

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
)

// File is a GGUF file to write: metadata in order, then tensors in order.
type File struct {
	KV      []KV
	Tensors []Tensor
}

// Write encodes f as a GGUF version 3 file to w. The data alignment is
// DefaultAlignment unless f carries general.alignment (uint32). Tensor data
// lengths must match their dimensions and type. Write does not close w.
// Tensors with a Stream are produced in file order, one at a time.
func (f *File) Write(w io.Writer) error {
	align := uint64(DefaultAlignment)
	for _, kv := range f.KV {
		if kv.Key == "general.alignment" {
			a, ok := kv.Value.(uint32)
			if !ok || a == 0 || a%8 != 0 {
				return fmt.Errorf("gguf: general.alignment must be a non-zero uint32 multiple of 8")
			}
			align = uint64(a)
		}
	}
	bw := bufio.NewWriter(w)
	e := &encoder{w: bw}
	e.raw([]byte(Magic))
	e.u32(Version)
	e.u64(uint64(len(f.Tensors)))
	e.u64(uint64(len(f.KV)))
	for _, kv := range f.KV {
		e.str(kv.Key)
		if err := e.value(kv.Value, true); err != nil {
			return fmt.Errorf("gguf: key %q: %w", kv.Key, err)
		}
	}
	var off uint64
	sizes := make([]uint64, len(f.Tensors))
	for i := range f.Tensors {
		t := &f.Tensors[i]
		size, err := t.DataSize()
		if err != nil {
			return err
		}
		if (t.Data != nil || t.Stream == nil) && uint64(len(t.Data)) != size {
			return fmt.Errorf("gguf: tensor %q has %d bytes of data, want %d", t.Name, len(t.Data), size)
		}
		sizes[i] = size
		e.str(t.Name)
		e.u32(uint32(len(t.Dims)))
		for _, d := range t.Dims {
			e.u64(d)
		}
		e.u32(uint32(t.Type))
		e.u64(off)
		off = alignUp(off+size, align)
	}
	e.pad(align)
	for i := range f.Tensors {
		t := &f.Tensors[i]
		if t.Data == nil && t.Stream != nil {
			start := e.n
			if err := t.Stream(e); err != nil {
				return fmt.Errorf("gguf: tensor %q: %w", t.Name, err)
			}
			if got := e.n - start; e.err == nil && got != sizes[i] {
				return fmt.Errorf("gguf: tensor %q streamed %d bytes of data, want %d", t.Name, got, sizes[i])
			}
		} else {
			e.raw(t.Data)
		}
		e.pad(align)
	}
	if e.err != nil {
		return fmt.Errorf("gguf: write: %w", e.err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("gguf: write: %w", err)
	}
	return nil
}

func alignUp(n, a uint64) uint64 { return (n + a - 1) / a * a }

// encoder writes little-endian GGUF primitives, remembering the first error
// and the byte count (for padding).
type encoder struct {
	w   io.Writer
	n   uint64
	err error
	buf [8]byte
}

func (e *encoder) raw(p []byte) {
	if e.err != nil {
		return
	}
	var n int
	n, e.err = e.w.Write(p)
	e.n += uint64(n)
}

// Write makes the encoder the io.Writer of a tensor's Stream.
func (e *encoder) Write(p []byte) (int, error) {
	e.raw(p)
	if e.err != nil {
		return 0, e.err
	}
	return len(p), nil
}

func (e *encoder) u8(v uint8) { e.raw([]byte{v}) }
func (e *encoder) u16(v uint16) {
	binary.LittleEndian.PutUint16(e.buf[:2], v)
	e.raw(e.buf[:2])
}
func (e *encoder) u32(v uint32) {
	binary.LittleEndian.PutUint32(e.buf[:4], v)
	e.raw(e.buf[:4])
}
func (e *encoder) u64(v uint64) {
	binary.LittleEndian.PutUint64(e.buf[:8], v)
	e.raw(e.buf[:8])
}
func (e *encoder) str(s string) {
	e.u64(uint64(len(s)))
	e.raw([]byte(s))
}
func (e *encoder) pad(align uint64) {
	if r := e.n % align; r != 0 {
		e.raw(make([]byte, align-r))
	}
}

// value writes v, preceded by its type tag when tagged is set.
func (e *encoder) value(v any, tagged bool) error {
	tag := func(t ValueType) {
		if tagged {
			e.u32(uint32(t))
		}
	}
	switch v := v.(type) {
	case uint8:
		tag(TypeUint8)
		e.u8(v)
	case int8:
		tag(TypeInt8)
		e.u8(uint8(v))
	case uint16:
		tag(TypeUint16)
		e.u16(v)
	case int16:
		tag(TypeInt16)
		e.u16(uint16(v))
	case uint32:
		tag(TypeUint32)
		e.u32(v)
	case int32:
		tag(TypeInt32)
		e.u32(uint32(v))
	case float32:
		tag(TypeFloat32)
		e.u32(math.Float32bits(v))
	case bool:
		tag(TypeBool)
		if v {
			e.u8(1)
		} else {
			e.u8(0)
		}
	case string:
		tag(TypeString)
		e.str(v)
	case uint64:
		tag(TypeUint64)
		e.u64(v)
	case int64:
		tag(TypeInt64)
		e.u64(uint64(v))
	case float64:
		tag(TypeFloat64)
		e.u64(math.Float64bits(v))
	case []string:
		arrayOf(e, tagged, TypeString, v)
	case []float32:
		arrayOf(e, tagged, TypeFloat32, v)
	case []int32:
		arrayOf(e, tagged, TypeInt32, v)
	case []uint32:
		arrayOf(e, tagged, TypeUint32, v)
	case []int64:
		arrayOf(e, tagged, TypeInt64, v)
	case []uint8:
		arrayOf(e, tagged, TypeUint8, v)
	case []bool:
		arrayOf(e, tagged, TypeBool, v)
	default:
		return fmt.Errorf("unsupported value type %T", v)
	}
	return nil
}

func arrayOf[T any](e *encoder, tagged bool, elem ValueType, vs []T) {
	if tagged {
		e.u32(uint32(TypeArray))
	}
	e.u32(uint32(elem))
	e.u64(uint64(len(vs)))
	for _, v := range vs {
		_ = e.value(v, false) // element types are all supported
	}
}
