package plugins

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	enginev1 "github.com/stokerhq/stoker/proto/engine/v1"
)

// grpcClient implements Engine over a plugin's gRPC connection. It trusts
// nothing the plugin sends: events that break the contract end the run
// with an engine error naming the breach.
type grpcClient struct {
	rpc  enginev1.EngineServiceClient
	conn grpc.ClientConnInterface // for Run's stream, read with frameCodec
	// logs is the plugin's log budget, shared with its stderr lines when
	// the plugin was launched (see Launch).
	logs *logBudget
	now  func() time.Time
}

func newGRPCClient(c grpc.ClientConnInterface) *grpcClient {
	return &grpcClient{rpc: enginev1.NewEngineServiceClient(c), conn: c, logs: newLogBudget(), now: time.Now}
}

var _ Engine = (*grpcClient)(nil)
var _ ModelManager = (*grpcClient)(nil)

func (c *grpcClient) Describe(ctx context.Context) (*Description, error) {
	resp, err := c.rpc.Describe(ctx, &enginev1.DescribeRequest{}, grpc.MaxCallRecvMsgSize(MaxDescribeBytes))
	if err != nil {
		if status.Code(err) == codes.ResourceExhausted {
			return nil, fmt.Errorf("describe: the answer is over the limit of %d bytes: %w", MaxDescribeBytes, err)
		}
		return nil, fmt.Errorf("describe: %w", err)
	}
	d := describeFromProto(resp)
	if err := checkDescribeBounds(d); err != nil {
		return nil, fmt.Errorf("describe: %w", err)
	}
	return d, nil
}

// checkDescribeBounds refuses a Describe answer over the bounds of
// limits.go: it is advertised to the studio in every heartbeat.
func checkDescribeBounds(d *Description) error {
	if len(d.Engines) > MaxEngines {
		return fmt.Errorf("%d engine ids, over the limit of %d", len(d.Engines), MaxEngines)
	}
	names := append([]string{d.Name, d.Version, d.Device.Backend, d.Device.Name}, d.Engines...)
	for k, models := range d.Models {
		if len(models) > MaxModelsPerKind {
			return fmt.Errorf("%d models for kind %.32q, over the limit of %d", len(models), k, MaxModelsPerKind)
		}
		names = append(names, models...)
		names = append(names, string(k))
	}
	for _, k := range d.Kinds {
		names = append(names, string(k))
	}
	for _, n := range names {
		if len(n) > MaxNameBytes {
			return fmt.Errorf("a name of %d bytes (%.32q…), over the limit of %d", len(n), n, MaxNameBytes)
		}
	}
	if len(d.NotReadyReason) > MaxReasonBytes {
		d.NotReadyReason = cutTo(d.NotReadyReason, MaxReasonBytes)
	}
	return nil
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
		enginev1.EngineService_Run_FullMethodName, grpc.ForceCodecV2(newFrameCodec()),
		grpc.MaxCallRecvMsgSize(MaxMessageBytes))
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
		textBytes int // streamed text so far
	)
	breach := func(format string, args ...any) error {
		return Errorf(ErrEngine, "plugin broke the engine contract: "+format, args...)
	}
	for {
		err := stream.RecvMsg(&frame)
		if err == io.EOF {
			return breach("stream ended without an outcome")
		}
		if status.Code(err) == codes.ResourceExhausted && ctx.Err() == nil {
			// gRPC refused a message over the receive limit before reading
			// it; the stream is gone, the connection and the plugin are not.
			return breach("a message over the limit of %d bytes (%v)", MaxMessageBytes, status.Convert(err).Message())
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
			step, total := e.Progress.GetStep(), e.Progress.GetTotal()
			if total > 0 {
				step = min(step, total) // a ratio past 1 helps nobody
			}
			err = ev.Progress(step, total, cutTo(e.Progress.GetUnit(), MaxNameBytes))
		case *enginev1.RunResponse_Log:
			err = c.log(ev, e.Log.GetLevel(), e.Log.GetMessage())
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
		case *enginev1.RunResponse_Text:
			piece := e.Text.GetText()
			textBytes += len(piece)
			switch {
			case !req.StreamText:
				return breach("streamed text the request did not ask for")
			case gotResult || gotOutput:
				return breach("streamed text after the result")
			case len(piece) > MaxTextPieceBytes:
				return breach("a streamed text piece of %d bytes, over the limit of %d", len(piece), MaxTextPieceBytes)
			case textBytes > MaxResultBytes:
				return Errorf(ErrBadInput, "the streamed text is over the limit of %d bytes on a result", MaxResultBytes)
			}
			err = StreamText(ev, piece)
		case *enginev1.RunResponse_Result:
			js := e.Result.GetJson()
			switch {
			case gotResult || gotOutput:
				return breach("a second result")
			case len(js) > MaxResultBytes:
				// Every node has the same bound: another attempt would
				// fail the same way.
				return Errorf(ErrBadInput, "the JSON result is %d bytes, over the limit of %d bytes on a result", len(js), MaxResultBytes)
			case !isJSONContainer(js):
				return breach("result is not a JSON object or array")
			}
			gotResult = true
			err = ev.Result(js)
		case *enginev1.RunResponse_Error:
			c.reportDropped(ev)
			return jobErrorFromProto(e.Error)
		case *enginev1.RunResponse_Done:
			c.reportDropped(ev)
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

// log passes a job's log line on, cut to MaxLogBytes, if the plugin's log
// budget allows; a line that passes after dropped ones is preceded by a
// notice of how many.
func (c *grpcClient) log(ev Events, level, msg string) error {
	ok, dropped := c.logs.take(c.now())
	if !ok {
		return nil
	}
	if dropped > 0 {
		if err := ev.Log("warn", droppedNotice(dropped)); err != nil {
			return err
		}
	}
	return ev.Log(cutTo(level, 16), cutLine(msg))
}

// reportDropped tells ev of log lines dropped since the last one passed,
// at the end of a run.
func (c *grpcClient) reportDropped(ev Events) {
	if n := c.logs.flush(); n > 0 {
		_ = ev.Log("warn", droppedNotice(n))
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
	resp, err := c.rpc.ListResident(ctx, &enginev1.ListResidentRequest{}, grpc.MaxCallRecvMsgSize(MaxListBytes))
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
