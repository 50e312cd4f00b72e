// Package lamamodel generates tiny-lama, a small random-weight ONNX model
// with the signature of a LaMa inpainting export: inputs "image" float32
// [1,3,H,W] (0..1) and "mask" float32 [1,1,H,W] (1 where to fill), output
// "output" float32 [1,3,H,W], with H and W dynamic. These are the names
// the big-lama ONNX exports use. The onnx plugin's tests and the
// supervisor's -dev mode use it so that object-removal jobs run through
// the real ONNX Runtime with nothing downloaded.
//
// Inside, like LaMa, the network sees the masked image and the mask:
//
//	masked = image × (1 − mask)
//	x      = Concat(masked, mask)                 4 channels
//	x      = Relu(Conv3×3(x))                     8 channels, pads 1
//	x      = Relu(Conv3×3(x))                     8 channels, pads 1
//	fill   = Sigmoid(Conv3×3(x))                  3 channels, pads 1
//	output = masked + fill × mask
//
// so where the mask is 0 the output is the input exactly (x×1+0 and
// fill×0 are exact in float32), a property tests can check, and where it is
// 1 the output is the network's fill in 0..1.
//
// The file is written field by field with protowire from the ONNX
// protobuf schema's field numbers (ModelProto, GraphProto, NodeProto,
// AttributeProto, TensorProto, ValueInfoProto): IR version 7, opset 13.
// The bytes are the same on every call and every machine: the weights come
// from a fixed-seed SplitMix64 stream scaled by 1/√fan-in, and
// [TinyLaMaSHA256] pins them, so a caller can tell whether a file on disk
// is current without generating the model again.
package lamamodel

import (
	"encoding/binary"
	"io"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// TinyLaMaFilename is the file name the model is served and stored under.
const TinyLaMaFilename = "tiny-lama.onnx"

// TinyLaMaSHA256 and TinyLaMaSize are the hex SHA-256 digest and the
// length of what WriteTinyLaMa writes; TestTinyLaMaDeterministic keeps them
// equal to the generator's output (a change to the generator must update
// both, on purpose).
const (
	TinyLaMaSHA256 = "55866098b2332a352c10df633e18db3ae0d44e0541211f487be01839c984d944"
	TinyLaMaSize   = 5323
)

// The model's input and output names (those of the big-lama ONNX exports).
const (
	InputImage = "image"
	InputMask  = "mask"
	Output     = "output"
)

// IRVersion and Opset are the ONNX IR version and default-domain opset the
// model declares.
const (
	IRVersion = 7
	Opset     = 13
)

// hidden is the channel count of the two inner convolutions.
const hidden = 8

// seed is the root of the weights' random stream.
const seed = 0x1A4A_0001

// WriteTinyLaMa writes the model as an ONNX file.
func WriteTinyLaMa(w io.Writer) error {
	_, err := w.Write(TinyLaMa())
	return err
}

// TinyLaMa returns the model's bytes.
func TinyLaMa() []byte {
	rng := splitMix64(seed)
	var g []byte
	g = appendString(g, 2, "tiny-lama")

	// Nodes, in topological order.
	node := func(op, name string, in []string, out string, attrs ...[]byte) {
		var n []byte
		for _, s := range in {
			n = appendString(n, 1, s)
		}
		n = appendString(n, 2, out)
		n = appendString(n, 3, name)
		n = appendString(n, 4, op)
		for _, a := range attrs {
			n = appendBytes(n, 5, a)
		}
		g = appendBytes(g, 1, n)
	}
	node("Sub", "invert_mask", []string{"one", InputMask}, "keep")
	node("Mul", "mask_image", []string{InputImage, "keep"}, "masked")
	node("Concat", "concat", []string{"masked", InputMask}, "x0", attrInt("axis", 1))
	conv := func(i int, in, out string) {
		node("Conv", "conv"+itoa(i), []string{in, "conv" + itoa(i) + ".weight", "conv" + itoa(i) + ".bias"}, out,
			attrInts("kernel_shape", 3, 3), attrInts("pads", 1, 1, 1, 1), attrInts("strides", 1, 1))
	}
	conv(1, "x0", "c1")
	node("Relu", "relu1", []string{"c1"}, "r1")
	conv(2, "r1", "c2")
	node("Relu", "relu2", []string{"c2"}, "r2")
	conv(3, "r2", "c3")
	node("Sigmoid", "sigmoid", []string{"c3"}, "fill")
	node("Mul", "mask_fill", []string{"fill", InputMask}, "masked_fill")
	node("Add", "compose", []string{"masked", "masked_fill"}, Output)

	// Initializers: the scalar 1 and the convolutions' weights and biases.
	g = appendBytes(g, 5, tensor("one", nil, []float32{1}))
	for i, c := range [][2]int{{4, hidden}, {hidden, hidden}, {hidden, 3}} {
		in, out := c[0], c[1]
		fanIn := in * 3 * 3
		scale := float32(1 / math.Sqrt(float64(fanIn)))
		wts := make([]float32, out*fanIn)
		for j := range wts {
			wts[j] = rng.uniform() * scale
		}
		bias := make([]float32, out)
		for j := range bias {
			bias[j] = rng.uniform() * scale
		}
		name := "conv" + itoa(i+1)
		g = appendBytes(g, 5, tensor(name+".weight", []int64{int64(out), int64(in), 3, 3}, wts))
		g = appendBytes(g, 5, tensor(name+".bias", []int64{int64(out)}, bias))
	}

	g = appendBytes(g, 11, valueInfo(InputImage, 3))
	g = appendBytes(g, 11, valueInfo(InputMask, 1))
	g = appendBytes(g, 12, valueInfo(Output, 3))

	var m []byte
	m = protowire.AppendTag(m, 1, protowire.VarintType) // ir_version
	m = protowire.AppendVarint(m, IRVersion)
	m = appendString(m, 2, "stoker lamamodel") // producer_name
	m = appendBytes(m, 7, g)                   // graph
	var op []byte
	op = appendString(op, 1, "") // domain: the default one
	op = protowire.AppendTag(op, 2, protowire.VarintType)
	op = protowire.AppendVarint(op, Opset)
	m = appendBytes(m, 8, op) // opset_import
	return m
}

// tensor is a float32 TensorProto with its data in raw_data (little
// endian, as ONNX specifies).
func tensor(name string, dims []int64, data []float32) []byte {
	var t []byte
	for _, d := range dims {
		t = protowire.AppendTag(t, 1, protowire.VarintType)
		t = protowire.AppendVarint(t, uint64(d))
	}
	t = protowire.AppendTag(t, 2, protowire.VarintType) // data_type
	t = protowire.AppendVarint(t, elemFloat)
	t = appendString(t, 8, name)
	raw := make([]byte, 4*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	return appendBytes(t, 9, raw)
}

// elemFloat is TensorProto.DataType FLOAT.
const elemFloat = 1

// valueInfo is a ValueInfoProto of a float32 tensor [1,channels,H,W] with
// H and W named dynamic dimensions.
func valueInfo(name string, channels int) []byte {
	var shape []byte
	dim := func(value int64, param string) {
		var d []byte
		if param != "" {
			d = appendString(d, 2, param) // dim_param
		} else {
			d = protowire.AppendTag(d, 1, protowire.VarintType) // dim_value
			d = protowire.AppendVarint(d, uint64(value))
		}
		shape = appendBytes(shape, 1, d)
	}
	dim(1, "")
	dim(int64(channels), "")
	dim(0, "H")
	dim(0, "W")
	var tt []byte // TypeProto.Tensor
	tt = protowire.AppendTag(tt, 1, protowire.VarintType)
	tt = protowire.AppendVarint(tt, elemFloat)
	tt = appendBytes(tt, 2, shape)
	var typ []byte
	typ = appendBytes(typ, 1, tt) // TypeProto.tensor_type
	var v []byte
	v = appendString(v, 1, name)
	return appendBytes(v, 2, typ)
}

// AttributeProto.AttributeType values.
const (
	attrTypeInt  = 2
	attrTypeInts = 7
)

func attrInt(name string, v int64) []byte {
	var a []byte
	a = appendString(a, 1, name)
	a = protowire.AppendTag(a, 3, protowire.VarintType)
	a = protowire.AppendVarint(a, uint64(v))
	a = protowire.AppendTag(a, 20, protowire.VarintType)
	return protowire.AppendVarint(a, attrTypeInt)
}

func attrInts(name string, vs ...int64) []byte {
	var a []byte
	a = appendString(a, 1, name)
	for _, v := range vs {
		a = protowire.AppendTag(a, 8, protowire.VarintType)
		a = protowire.AppendVarint(a, uint64(v))
	}
	a = protowire.AppendTag(a, 20, protowire.VarintType)
	return protowire.AppendVarint(a, attrTypeInts)
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func itoa(i int) string { return string(rune('0' + i)) }

// splitMix64 is a SplitMix64 stream.
type splitMix64 uint64

func (s *splitMix64) next() uint64 {
	*s += 0x9E3779B97F4A7C15
	z := uint64(*s)
	z = (z ^ z>>30) * 0xBF58476D1CE4E5B9
	z = (z ^ z>>27) * 0x94D049BB133111EB
	return z ^ z>>31
}

// uniform returns a float32 in [-1, 1) from the stream's top 24 bits.
func (s *splitMix64) uniform() float32 {
	return float32(int32(s.next()>>40)-1<<23) / (1 << 23)
}
