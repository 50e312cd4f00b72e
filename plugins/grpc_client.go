package plugins

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sync"
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
	conn grpc.ClientConnInterface // for the job streams, read with frameCodec
	// logs is the plugin's log budget, shared with its stderr lines when
	// the plugin was launched (see Launch).
	logs *logBudget
	now  func() time.Time

	jobsMu sync.Mutex // guards jobs and noJobs; held while a Jobs stream opens
	jobs   *jobStream // the open Jobs stream, or nil
	noJobs bool       // the plugin does not serve Jobs
	closed bool       // close was called: no stream opens any more
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

// Run runs a job on the plugin's Jobs stream, or on a Run stream of its
// own when the plugin does not serve Jobs (or the Jobs stream is busy
// reopening).
func (c *grpcClient) Run(ctx context.Context, req *RunRequest, ev Events) error {
	if js := c.jobStream(ctx); js != nil {
		return js.run(ctx, req, ev)
	}
	return c.runStream(ctx, req, ev)
}

// runStream runs a job on a Run stream of its own.
func (c *grpcClient) runStream(ctx context.Context, req *RunRequest, ev Events) error {
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
	st := runChecks{c: c, ev: ev, streamText: req.StreamText}
	for {
		err := stream.RecvMsg(&frame)
		if err == io.EOF {
			return breach("stream ended without an outcome")
		}
		if status.Code(err) == codes.ResourceExhausted && ctx.Err() == nil {
			// gRPC refused a message over the receive limit before reading
			// it; the stream is gone, the connection and the plugin are not.
			return overLimit(err)
		}
		if err != nil {
			return c.streamErr(ctx, err)
		}
		if done, outcome := st.event(frame.buf); done {
			return outcome
		}
	}
}

// breach is the outcome of a job whose plugin broke the engine contract.
func breach(format string, args ...any) error {
	return Errorf(ErrEngine, "plugin broke the engine contract: "+format, args...)
}

// overLimit is the outcome of a job whose plugin sent a message over the
// host's receive limit (err is gRPC's refusal).
func overLimit(err error) error {
	return breach("a message over the limit of %d bytes (%v)", MaxMessageBytes, status.Convert(err).Message())
}

// runChecks passes one run's events on to ev, checking each against the
// contract.
type runChecks struct {
	c          *grpcClient
	ev         Events
	streamText bool   // the request asked for streamed text
	ext        string // output extension, fixed by the first chunk
	gotOutput  bool
	gotResult  bool
	textBytes  int // streamed text so far
}

// event handles one RunResponse in its wire form. done reports that the
// run is over, with outcome its result: a terminal event, a breach of the
// contract, or an error from ev (the receiver is gone: it cancelled the
// job or could not take the output).
func (st *runChecks) event(buf []byte) (done bool, outcome error) {
	chunkExt, chunk, resp, err := decodeEvent(buf)
	if err != nil {
		return true, breach("%v", err)
	}
	if resp == nil {
		// An output chunk, its data still in the frame's buffer.
		resp = &enginev1.RunResponse{Event: &enginev1.RunResponse_Output{Output: &enginev1.OutputChunk{Ext: chunkExt, Data: chunk}}}
	}
	ev := st.ev
	switch e := resp.GetEvent().(type) {
	case *enginev1.RunResponse_Progress:
		step, total := e.Progress.GetStep(), e.Progress.GetTotal()
		if total > 0 {
			step = min(step, total) // a ratio past 1 helps nobody
		}
		err = ev.Progress(step, total, cutTo(e.Progress.GetUnit(), MaxNameBytes))
	case *enginev1.RunResponse_Log:
		err = st.c.log(ev, e.Log.GetLevel(), e.Log.GetMessage())
	case *enginev1.RunResponse_Output:
		switch {
		case st.gotResult:
			return true, breach("output chunk after a JSON result")
		case !validExt.MatchString(e.Output.GetExt()):
			return true, breach("output extension %q is not 1-8 lowercase letters or digits", e.Output.GetExt())
		case st.gotOutput && e.Output.GetExt() != st.ext:
			return true, breach("output extension changed from %q to %q", st.ext, e.Output.GetExt())
		}
		st.ext, st.gotOutput = e.Output.GetExt(), true
		err = ev.Output(st.ext, e.Output.GetData())
	case *enginev1.RunResponse_Text:
		piece := e.Text.GetText()
		st.textBytes += len(piece)
		switch {
		case !st.streamText:
			return true, breach("streamed text the request did not ask for")
		case st.gotResult || st.gotOutput:
			return true, breach("streamed text after the result")
		case len(piece) > MaxTextPieceBytes:
			return true, breach("a streamed text piece of %d bytes, over the limit of %d", len(piece), MaxTextPieceBytes)
		case st.textBytes > MaxResultBytes:
			return true, Errorf(ErrBadInput, "the streamed text is over the limit of %d bytes on a result", MaxResultBytes)
		}
		err = StreamText(ev, piece)
	case *enginev1.RunResponse_Result:
		js := e.Result.GetJson()
		switch {
		case st.gotResult || st.gotOutput:
			return true, breach("a second result")
		case len(js) > MaxResultBytes:
			// Every node has the same bound: another attempt would
			// fail the same way.
			return true, Errorf(ErrBadInput, "the JSON result is %d bytes, over the limit of %d bytes on a result", len(js), MaxResultBytes)
		case !isJSONContainer(js):
			return true, breach("result is not a JSON object or array")
		}
		st.gotResult = true
		err = ev.Result(js)
	case *enginev1.RunResponse_Error:
		st.c.reportDropped(ev)
		return true, jobErrorFromProto(e.Error)
	case *enginev1.RunResponse_Done:
		st.c.reportDropped(ev)
		if !st.gotOutput && !st.gotResult {
			return true, breach("job finished with neither output nor result")
		}
		return true, nil
	default:
		return true, breach("unknown event %T", e)
	}
	if err != nil {
		return true, err
	}
	return false, nil
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
