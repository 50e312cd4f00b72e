package gguf

import (
	"encoding/binary"
	"fmt"
	"math"
)

// AppendF32 appends xs to dst as little-endian F32 tensor data.
func AppendF32(dst []byte, xs []float32) []byte {
	for _, x := range xs {
		dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(x))
	}
	return dst
}

// AppendF16 appends xs to dst as little-endian F16 tensor data, each value
// rounded to the nearest half (ties to even).
func AppendF16(dst []byte, xs []float32) []byte {
	for _, x := range xs {
		dst = binary.LittleEndian.AppendUint16(dst, F16(x))
	}
	return dst
}

// AppendQ8_0 appends xs to dst as Q8_0 tensor data, quantized as ggml's
// reference quantize_row_q8_0 does: per block of [Q8_0Block] values, the
// scale is the largest magnitude over 127 and each value is rounded to the
// nearest multiple of it (half away from zero). The arithmetic is float32
// with no fused operations, so the bytes are the same on every machine.
// len(xs) must be a multiple of Q8_0Block.
func AppendQ8_0(dst []byte, xs []float32) ([]byte, error) {
	if len(xs)%Q8_0Block != 0 {
		return dst, fmt.Errorf("gguf: Q8_0 of %d values, want a multiple of %d", len(xs), Q8_0Block)
	}
	for b := 0; b < len(xs); b += Q8_0Block {
		blk := xs[b : b+Q8_0Block]
		var amax float32
		for _, x := range blk {
			amax = max(amax, float32(math.Abs(float64(x))))
		}
		d := amax / 127
		var id float32
		if d != 0 {
			id = 1 / d
		}
		dst = binary.LittleEndian.AppendUint16(dst, F16(d))
		for _, x := range blk {
			q := float32(x * id)
			dst = append(dst, byte(int8(math.Round(float64(q)))))
		}
	}
	return dst, nil
}

// F16 converts f to IEEE 754 half precision, rounding to nearest even;
// out-of-range values become infinities and NaNs stay NaN.
func F16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23&0xff) - 127 + 15
	man := b & 0x7fffff
	switch {
	case b&0x7fffffff == 0:
		return sign
	case b>>23&0xff == 0xff: // Inf or NaN
		if man != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	case exp >= 0x1f: // overflow
		return sign | 0x7c00
	case exp <= 0: // subnormal or zero in half precision
		if exp < -10 {
			return sign
		}
		man |= 0x800000
		shift := uint32(14 - exp)
		half := man >> shift
		rem := man & (1<<shift - 1)
		mid := uint32(1) << (shift - 1)
		if rem > mid || (rem == mid && half&1 == 1) {
			half++
		}
		return sign | uint16(half)
	}
	half := uint32(exp)<<10 | man>>13
	rem := man & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && half&1 == 1) {
		half++ // may carry into the exponent, which is still correct
	}
	return sign | uint16(half)
}
