package faults

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/stokerhq/stoker/plugins"
)

// Serve serves e as plugins.Serve does, with one addition the hostile
// faults need: a raw wire. The SDK's Events bound what a well-behaved
// plugin sends (log lines are cut, results over the limit refused, output
// split into chunks); a hostile plugin does not use the SDK, so to test
// the host's own bounds the faults engine must be able to send any bytes
// as a Run event. Serve installs a server codec that sends a [rawEvent]
// verbatim and a stream interceptor that puts the stream's raw sender
// into the Run context. Everything else is plugins.Serve's.
func Serve(e *Engine) {
	plugins.Serve(e, plugins.WithGRPCServer(func(opts []grpc.ServerOption) *grpc.Server {
		return grpc.NewServer(append(opts,
			grpc.ForceServerCodecV2(rawCodec{proto: encoding.GetCodecV2("proto")}),
			grpc.StreamInterceptor(rawInterceptor))...)
	}))
	if startFault(e.env, EnvStart) == "linger" {
		select {} // lives on after go-plugin's Shutdown: only a kill ends it
	}
}

// rawEvent is a Run event already in its wire form: a serialised
// RunResponse, which may lie (a length prefix past its end, a message
// larger than any limit).
type rawEvent []byte

// rawCodec is gRPC's proto codec, except that it sends a rawEvent as is.
type rawCodec struct{ proto encoding.CodecV2 }

func (c rawCodec) Name() string { return "proto" }

func (c rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(rawEvent); ok {
		return mem.BufferSlice{mem.SliceBuffer(r)}, nil
	}
	return c.proto.Marshal(v)
}

func (c rawCodec) Unmarshal(data mem.BufferSlice, v any) error { return c.proto.Unmarshal(data, v) }

// rawKey is the context key of a Run's raw sender.
type rawKey struct{}

// rawSender sends raw events on a Run stream, or on the Jobs stream
// wrapped in a JobsResponse for job (when wrap is set). It must not be used
// while the SDK's Events may send on the same stream: the faults engine
// uses one or the other, never both at once.
type rawSender struct {
	stream grpc.ServerStream
	job    uint64
	wrap   bool
}

func (s rawSender) send(b []byte) error {
	if s.wrap {
		w := protowire.AppendTag(nil, 1, protowire.VarintType)
		w = protowire.AppendVarint(w, s.job)
		w = protowire.AppendTag(w, 2, protowire.BytesType)
		w = protowire.AppendVarint(w, uint64(len(b)))
		b = append(w, b...)
	}
	return s.stream.SendMsg(rawEvent(b))
}

// rawInterceptor gives each stream's handler a context carrying the
// stream's raw sender.
func rawInterceptor(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, &rawStream{ServerStream: ss, ctx: context.WithValue(ss.Context(), rawKey{}, rawSender{stream: ss})})
}

type rawStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *rawStream) Context() context.Context { return s.ctx }

// errNoRawWire is returned by a hostile fault run without [Serve]'s raw
// wire (in process, through plugintest.Connect).
var errNoRawWire = errors.New("faults: this fault needs the raw wire of faults.Serve (run the faults-plugin binary)")

func rawFrom(ctx context.Context) (rawSender, error) {
	s, ok := ctx.Value(rawKey{}).(rawSender)
	if !ok {
		return rawSender{}, errNoRawWire
	}
	s.job, s.wrap = plugins.WireJob(ctx)
	return s, nil
}
