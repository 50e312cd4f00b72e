package gguf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// Bounds on what the reader accepts; real models stay far below them.
const (
	maxKV        = 1 << 16 // metadata entries
	maxTensors   = 1 << 20
	maxString    = 64 << 20 // bytes in one string (chat templates can be long)
	maxArray     = 1 << 24  // elements in one array (vocabularies reach ~260k)
	maxDims      = 4        // GGML_MAX_DIMS
	maxNestDepth = 2
)

// Header is the metadata and tensor table of a GGUF file.
type Header struct {
	Version uint32
	KV      []KV
	// Tensors lists the tensor table; Data is always nil.
	Tensors []Tensor
}

// Get returns the value of key and whether it is present.
func (h *Header) Get(key string) (any, bool) {
	for _, kv := range h.KV {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return nil, false
}

// String returns the string value of key, or "" when absent or not a string.
func (h *Header) String(key string) string {
	v, _ := h.Get(key)
	s, _ := v.(string)
	return s
}

// Uint returns an unsigned integer value of key (any integer type), and
// whether it was present with an integer type and non-negative.
func (h *Header) Uint(key string) (uint64, bool) {
	v, _ := h.Get(key)
	switch v := v.(type) {
	case uint8:
		return uint64(v), true
	case uint16:
		return uint64(v), true
	case uint32:
		return uint64(v), true
	case uint64:
		return v, true
	case int8:
		return uint64(v), v >= 0
	case int16:
		return uint64(v), v >= 0
	case int32:
		return uint64(v), v >= 0
	case int64:
		return uint64(v), v >= 0
	}
	return 0, false
}

// Architecture returns general.architecture ("" when absent).
func (h *Header) Architecture() string { return h.String("general.architecture") }

// ReadHeader reads the header, metadata and tensor table of a GGUF file from
// r. It fails with an error wrapping [ErrNotGGUF] when the magic is wrong,
// and with a descriptive error for truncated input, unknown value types or
// implausible counts. It reads no tensor data.
func ReadHeader(r io.Reader) (*Header, error) {
	d := &decoder{r: bufio.NewReader(r)}
	h, err := d.header()
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("truncated: %w", io.ErrUnexpectedEOF)
		}
		return nil, fmt.Errorf("gguf: %w", err)
	}
	return h, nil
}

type decoder struct {
	r   *bufio.Reader
	buf [8]byte
}

func (d *decoder) header() (*Header, error) {
	magic := make([]byte, 4)
	if _, err := io.ReadFull(d.r, magic); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("empty file: %w", ErrNotGGUF)
		}
		return nil, err
	}
	if string(magic) != Magic {
		return nil, fmt.Errorf("magic %q: %w", magic, ErrNotGGUF)
	}
	ver, err := d.u32()
	if err != nil {
		return nil, err
	}
	if ver != 2 && ver != 3 {
		return nil, fmt.Errorf("unsupported version %d", ver)
	}
	nt, err := d.u64()
	if err != nil {
		return nil, err
	}
	nkv, err := d.u64()
	if err != nil {
		return nil, err
	}
	if nt > maxTensors {
		return nil, fmt.Errorf("implausible tensor count %d", nt)
	}
	if nkv > maxKV {
		return nil, fmt.Errorf("implausible metadata count %d", nkv)
	}
	h := &Header{Version: ver, KV: make([]KV, 0, nkv), Tensors: make([]Tensor, 0, nt)}
	for i := uint64(0); i < nkv; i++ {
		key, err := d.str()
		if err != nil {
			return nil, fmt.Errorf("metadata %d key: %w", i, err)
		}
		t, err := d.u32()
		if err != nil {
			return nil, err
		}
		v, err := d.value(ValueType(t), 0)
		if err != nil {
			return nil, fmt.Errorf("metadata %q: %w", key, err)
		}
		h.KV = append(h.KV, KV{Key: key, Value: v})
	}
	for i := uint64(0); i < nt; i++ {
		var t Tensor
		if t.Name, err = d.str(); err != nil {
			return nil, fmt.Errorf("tensor %d name: %w", i, err)
		}
		nd, err := d.u32()
		if err != nil {
			return nil, err
		}
		if nd == 0 || nd > maxDims {
			return nil, fmt.Errorf("tensor %q: %d dimensions", t.Name, nd)
		}
		t.Dims = make([]uint64, nd)
		for j := range t.Dims {
			if t.Dims[j], err = d.u64(); err != nil {
				return nil, err
			}
		}
		tt, err := d.u32()
		if err != nil {
			return nil, err
		}
		t.Type = TensorType(tt)
		if t.Offset, err = d.u64(); err != nil {
			return nil, err
		}
		h.Tensors = append(h.Tensors, t)
	}
	return h, nil
}

func (d *decoder) full(n int) ([]byte, error) {
	_, err := io.ReadFull(d.r, d.buf[:n])
	return d.buf[:n], err
}

func (d *decoder) u8() (uint8, error) {
	b, err := d.full(1)
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

func (d *decoder) u16() (uint16, error) {
	b, err := d.full(2)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint16(b), nil
}

func (d *decoder) u32() (uint32, error) {
	b, err := d.full(4)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b), nil
}

func (d *decoder) u64() (uint64, error) {
	b, err := d.full(8)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

func (d *decoder) str() (string, error) {
	n, err := d.u64()
	if err != nil {
		return "", err
	}
	if n > maxString {
		return "", fmt.Errorf("implausible string length %d", n)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(d.r, p); err != nil {
		return "", err
	}
	return string(p), nil
}

func (d *decoder) value(t ValueType, depth int) (any, error) {
	switch t {
	case TypeUint8:
		return d.u8()
	case TypeInt8:
		v, err := d.u8()
		return int8(v), err
	case TypeUint16:
		return d.u16()
	case TypeInt16:
		v, err := d.u16()
		return int16(v), err
	case TypeUint32:
		return d.u32()
	case TypeInt32:
		v, err := d.u32()
		return int32(v), err
	case TypeFloat32:
		v, err := d.u32()
		return math.Float32frombits(v), err
	case TypeBool:
		v, err := d.u8()
		if err == nil && v > 1 {
			return nil, fmt.Errorf("bool value %d", v)
		}
		return v == 1, err
	case TypeString:
		return d.str()
	case TypeUint64:
		return d.u64()
	case TypeInt64:
		v, err := d.u64()
		return int64(v), err
	case TypeFloat64:
		v, err := d.u64()
		return math.Float64frombits(v), err
	case TypeArray:
		if depth >= maxNestDepth {
			return nil, errors.New("arrays nested too deep")
		}
		return d.array(depth + 1)
	}
	return nil, fmt.Errorf("unknown value type %d", t)
}

func (d *decoder) array(depth int) (any, error) {
	et, err := d.u32()
	if err != nil {
		return nil, err
	}
	n, err := d.u64()
	if err != nil {
		return nil, err
	}
	if n > maxArray {
		return nil, fmt.Errorf("implausible array length %d", n)
	}
	switch ValueType(et) {
	case TypeString:
		return readArray(d, n, func() (string, error) { return d.str() })
	case TypeFloat32:
		return readArray(d, n, func() (float32, error) { v, err := d.u32(); return math.Float32frombits(v), err })
	case TypeInt32:
		return readArray(d, n, func() (int32, error) { v, err := d.u32(); return int32(v), err })
	case TypeUint32:
		return readArray(d, n, d.u32)
	case TypeInt64:
		return readArray(d, n, func() (int64, error) { v, err := d.u64(); return int64(v), err })
	case TypeUint8:
		return readArray(d, n, d.u8)
	}
	// Other element types are rare; keep them as []any.
	return readArray(d, n, func() (any, error) { return d.value(ValueType(et), depth) })
}

func readArray[T any](d *decoder, n uint64, next func() (T, error)) ([]T, error) {
	out := make([]T, 0, min(n, 4096))
	for i := uint64(0); i < n; i++ {
		v, err := next()
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}
