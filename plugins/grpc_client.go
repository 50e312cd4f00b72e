package plugins

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"

	"google.golang.org/grpc"

	enginev1 "github.com/stokerhq/stoker/proto/engine/v1"
)

// grpcClient implements Engine over a plugin's gRPC connection. It trusts
// nothing the plugin sends: events that break the contract end the run
// with an engine error naming the breach.
type grpcClient struct {
	rpc  enginev1.EngineServiceClient
	conn grpc.ClientConnInterface // for Run's stream, read with frameCodec
}

var _ Engine = (*grpcClient)(nil)
var _ ModelManager = (*grpcClient)(nil)

func (c *grpcClient) Describe(ctx context.Context) (*Description, error) {
	resp, err := c.rpc.Describe(ctx, &enginev1.DescribeRequest{})
	if err != nil {
		return nil, fmt.Errorf("describe: %w", err)
	}
	return describeFromProto(resp), nil
}

// validExt matches an output extension that is safe to put in a file name.
var validExt = regexp.MustCompile(`^[a-z0-9]{1,8}$`)

// errBrokenStream marks a Run whose stream broke before a terminal event;
// Plugin.Run turns it into a crash report when the process is gone.
var errBrokenStream = errors.New("plugin stream broke before the job's outcome")

func (c *grpcClient) Run(ctx context.Context, req *RunRequest, ev Events) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // cancels the plugin's job if we return early
	stream, err := c.conn.NewStream(ctx, &enginev1.EngineService_ServiceDesc.Streams[0],
		enginev1.EngineService_Run_FullMethodName, grpc.ForceCodecV2(newFrameCodec()))
	if err != nil {
		return c.streamErr(ctx, err)
	}
	if err := stream.SendMsg(runRequestToProto(req)); err != nil {
		return c.streamErr(ctx, err)
	}
	if err := stream.CloseSend(); err != nil {
		return c.streamErr(ctx, err)
	}
	var frame runFrame
	var (
		ext       string // output extension, fixed by the first chunk
		gotOutput bool
		gotResult bool
	)
	breach := func(format string, args ...any) error {
		return Errorf(ErrEngine, "plugin broke the engine contract: "+format, args...)
	}
	for {
		err := stream.RecvMsg(&frame)
		if err == io.EOF {
			return breach("stream ended without an outcome")
		}
		if err != nil {
			return c.streamErr(ctx, err)
		}
		chunkExt, chunk, resp, err := frame.decode()
		if err != nil {
			return breach("%v", err)
		}
		if resp == nil {
			// An output chunk, its data still in frame's buffer.
			resp = &enginev1.RunResponse{Event: &enginev1.RunResponse_Output{Output: &enginev1.OutputChunk{Ext: chunkExt, Data: chunk}}}
		}
		switch e := resp.GetEvent().(type) {
		case *enginev1.RunResponse_Progress:
			err = ev.Progress(e.Progress.GetStep(), e.Progress.GetTotal(), e.Progress.GetUnit())
		case *enginev1.RunResponse_Log:
			err = ev.Log(e.Log.GetLevel(), e.Log.GetMessage())
		case *enginev1.RunResponse_Output:
			switch {
			case gotResult:
				return breach("output chunk after a JSON result")
			case !validExt.MatchString(e.Output.GetExt()):
				return breach("output extension %q is not 1-8 lowercase letters or digits", e.Output.GetExt())
			case gotOutput && e.Output.GetExt() != ext:
				return breach("output extension changed from %q to %q", ext, e.Output.GetExt())
			}
			ext, gotOutput = e.Output.GetExt(), true
			err = ev.Output(ext, e.Output.GetData())
		case *enginev1.RunResponse_Result:
			js := e.Result.GetJson()
			switch {
			case gotResult || gotOutput:
				return breach("a second result")
			case !isJSONContainer(js):
				return breach("result is not a JSON object or array")
			}
			gotResult = true
			err = ev.Result(js)
		case *enginev1.RunResponse_Error:
			return jobErrorFromProto(e.Error)
		case *enginev1.RunResponse_Done:
			if !gotOutput && !gotResult {
				return breach("job finished with neither output nor result")
			}
			return nil
		default:
			return breach("unknown event %T", e)
		}
		if err != nil {
			// The receiver is gone (it cancelled the job or could not take
			// the output); its error is the outcome.
			return err
		}
	}
}

// streamErr classifies a gRPC error that ended a run.
func (c *grpcClient) streamErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		msg := "job cancelled"
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
			msg += ": " + cause.Error()
		}
		return &JobError{Kind: ErrCancelled, Message: msg, Err: context.Cause(ctx)}
	}
	return &JobError{Kind: ErrCrashed, Message: errBrokenStream.Error(), Err: errors.Join(errBrokenStream, err)}
}

func (c *grpcClient) Resident(ctx context.Context) ([]ResidentModel, error) {
	resp, err := c.rpc.ListResident(ctx, &enginev1.ListResidentRequest{})
	if err != nil {
		return nil, fmt.Errorf("list resident: %w", err)
	}
	return residentFromProto(resp), nil
}

func (c *grpcClient) Unload(ctx context.Context, model string) error {
	if _, err := c.rpc.Unload(ctx, &enginev1.UnloadRequest{Model: model}); err != nil {
		return fmt.Errorf("unload %q: %w", model, err)
	}
	return nil
}

// isJSONContainer reports whether b is valid JSON whose top level is an
// object or an array.
func isJSONContainer(b []byte) bool {
	if !json.Valid(b) {
		return false
	}
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		case '{', '[':
			return true
		}
		return false
	}
	return false
}
