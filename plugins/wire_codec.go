package plugins

import (
	"fmt"
	"unicode/utf8"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	enginev1 "github.com/stokerhq/stoker/proto/engine/v1"
)

// The host reads a job's events through this codec instead of the generic
// proto one: protobuf's decoder copies every bytes field into a fresh
// slice, so a 64 MiB output would leave 64 MiB of garbage behind in the
// supervisor. Here each received message is copied into one buffer that is
// reused for the whole run, and an output chunk's data is handed to
// Events.Output straight out of it (Output does not keep its argument).
// Every other event is decoded by protobuf as usual.

// runFrame is a received RunResponse in its wire form.
type runFrame struct{ buf []byte }

// frameCodec is gRPC's proto codec, except that it fills a *runFrame with
// the raw message bytes.
type frameCodec struct{ proto encoding.CodecV2 }

func newFrameCodec() frameCodec { return frameCodec{proto: encoding.GetCodecV2("proto")} }

func (c frameCodec) Name() string { return "proto" }

func (c frameCodec) Marshal(v any) (mem.BufferSlice, error) { return c.proto.Marshal(v) }

func (c frameCodec) Unmarshal(data mem.BufferSlice, v any) error {
	f, ok := v.(*runFrame)
	if !ok {
		return c.proto.Unmarshal(data, v)
	}
	f.buf = f.buf[:0]
	for _, b := range data {
		f.buf = append(f.buf, b.ReadOnlyData()...)
	}
	return nil
}

// outputField and the OutputChunk fields, as numbered in engine.proto.
const (
	outputField     protowire.Number = 3
	outputExtField  protowire.Number = 1
	outputDataField protowire.Number = 2
)

// decode returns the frame as an output chunk whose data aliases f.buf
// (valid until the next receive), or, for any other event, as a decoded
// RunResponse.
func (f *runFrame) decode() (ext string, data []byte, resp *enginev1.RunResponse, err error) {
	return decodeEvent(f.buf)
}

// decodeEvent returns the RunResponse in buf as an output chunk whose data
// aliases buf, or, for any other event, decoded.
func decodeEvent(buf []byte) (ext string, data []byte, resp *enginev1.RunResponse, err error) {
	if ext, data, ok := outputChunk(buf); ok {
		return ext, data, nil, nil
	}
	resp = &enginev1.RunResponse{}
	if err := proto.Unmarshal(buf, resp); err != nil {
		return "", nil, nil, fmt.Errorf("decode run event: %w", err)
	}
	return "", nil, resp, nil
}

// JobsResponse's fields, as numbered in engine.proto.
const (
	jobsJobField   protowire.Number = 1
	jobsEventField protowire.Number = 2
)

// jobsEvent splits a JobsResponse in its wire form into its job and its
// event's wire form (aliasing buf; nil when absent). A message the plain
// walk cannot split (fields repeated or unknown, as protobuf would merge
// or skip them) is decoded by protobuf and its event encoded again.
func jobsEvent(buf []byte) (job uint64, event []byte, err error) {
	var gotJob, gotEvent bool
	rest := buf
	for len(rest) > 0 {
		num, typ, n := protowire.ConsumeTag(rest)
		if n < 0 {
			return jobsEventSlow(buf)
		}
		rest = rest[n:]
		switch {
		case num == jobsJobField && typ == protowire.VarintType && !gotJob:
			v, m := protowire.ConsumeVarint(rest)
			if m < 0 {
				return jobsEventSlow(buf)
			}
			job, gotJob, rest = v, true, rest[m:]
		case num == jobsEventField && typ == protowire.BytesType && !gotEvent:
			v, m := protowire.ConsumeBytes(rest)
			if m < 0 {
				return jobsEventSlow(buf)
			}
			event, gotEvent, rest = v, true, rest[m:]
		default:
			return jobsEventSlow(buf)
		}
	}
	if gotEvent && event == nil {
		event = []byte{} // present and empty: an event with nothing set
	}
	return job, event, nil
}

func jobsEventSlow(buf []byte) (uint64, []byte, error) {
	var m enginev1.JobsResponse
	if err := proto.Unmarshal(buf, &m); err != nil {
		return 0, nil, fmt.Errorf("decode job event: %w", err)
	}
	if m.Event == nil {
		return m.GetJob(), nil, nil
	}
	b, err := proto.Marshal(m.Event)
	if err != nil {
		return 0, nil, fmt.Errorf("decode job event: %w", err)
	}
	if b == nil {
		b = []byte{}
	}
	return m.GetJob(), b, nil
}

// outputChunk parses a RunResponse that is exactly one OutputChunk with at
// most one ext and one data field. Anything else, including a message
// protobuf would merge from repeated fields, is left to the general path.
func outputChunk(buf []byte) (ext string, data []byte, ok bool) {
	num, typ, n := protowire.ConsumeTag(buf)
	if n < 0 || num != outputField || typ != protowire.BytesType {
		return "", nil, false
	}
	inner, m := protowire.ConsumeBytes(buf[n:])
	if m < 0 || n+m != len(buf) {
		return "", nil, false
	}
	var gotExt, gotData bool
	for len(inner) > 0 {
		num, typ, n := protowire.ConsumeTag(inner)
		if n < 0 || typ != protowire.BytesType {
			return "", nil, false
		}
		v, m := protowire.ConsumeBytes(inner[n:])
		if m < 0 {
			return "", nil, false
		}
		switch {
		case num == outputExtField && !gotExt && utf8.Valid(v):
			// proto3 strings must be UTF-8; protobuf rejects the rest.
			ext, gotExt = string(v), true
		case num == outputDataField && !gotData:
			data, gotData = v, true
		default:
			return "", nil, false
		}
		inner = inner[n+m:]
	}
	return ext, data, true
}
