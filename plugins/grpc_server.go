package plugins

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	enginev1 "github.com/stokerhq/stoker/proto/engine/v1"
)

// grpcServer serves an Engine inside the plugin process.
type grpcServer struct {
	enginev1.UnimplementedEngineServiceServer
	impl Engine
}

func (s *grpcServer) Describe(ctx context.Context, _ *enginev1.DescribeRequest) (*enginev1.DescribeResponse, error) {
	d, err := s.impl.Describe(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "describe: %v", err)
	}
	return describeToProto(d), nil
}

func (s *grpcServer) Run(req *enginev1.RunRequest, stream enginev1.EngineService_RunServer) error {
	ctx := stream.Context()
	r, err := runRequestFromProto(req)
	if err != nil {
		return stream.Send(errorEvent(Errorf(ErrBadInput, "%v", err)))
	}
	ev := &serverEvents{stream: stream, streamText: r.StreamText}
	runErr := s.impl.Run(ctx, r, ev)
	ev.close()
	if runErr != nil {
		return stream.Send(errorEvent(AsJobError(runErr)))
	}
	return stream.Send(&enginev1.RunResponse{Event: &enginev1.RunResponse_Done{Done: &enginev1.Done{}}})
}

func (s *grpcServer) ListResident(ctx context.Context, _ *enginev1.ListResidentRequest) (*enginev1.ListResidentResponse, error) {
	mm, ok := s.impl.(ModelManager)
	if !ok {
		return &enginev1.ListResidentResponse{}, nil
	}
	models, err := mm.Resident(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "resident: %v", err)
	}
	return residentToProto(models), nil
}

func (s *grpcServer) Unload(ctx context.Context, req *enginev1.UnloadRequest) (*enginev1.UnloadResponse, error) {
	if mm, ok := s.impl.(ModelManager); ok {
		if err := mm.Unload(ctx, req.GetModel()); err != nil {
			return nil, status.Errorf(codes.Internal, "unload %q: %v", req.GetModel(), err)
		}
	}
	return &enginev1.UnloadResponse{}, nil
}

func errorEvent(e *JobError) *enginev1.RunResponse {
	return &enginev1.RunResponse{Event: &enginev1.RunResponse_Error{Error: &enginev1.JobError{
		Kind: string(e.Kind), Message: cutLine(e.Error()),
	}}}
}

// errRunOver is returned by Events methods called after Run returned.
var errRunOver = errors.New("plugins: event after Run returned")

// serverEvents sends a run's events on its stream. A gRPC stream must not be
// sent on from two goroutines at once, and engines may report from several,
// so sends are serialised.
type serverEvents struct {
	mu     sync.Mutex // guards stream sends, done and lastProgress
	stream enginev1.EngineService_RunServer
	done   bool
	// lastProgress is when a progress event was last sent (see Progress).
	lastProgress time.Time
	// streamText is RunRequest.StreamText: only then does Text send, and
	// textBytes counts what it sent.
	streamText bool
	textBytes  int
}

// progressEvery is the least time between two progress events on the
// wire. Each event is a stream message costing tens of microseconds; an
// engine reporting every token of a fast model would spend more on its
// reports than on the job. Nobody needs them more often: the stall
// watchdog counts minutes and the status page refreshes in seconds.
const progressEvery = 100 * time.Millisecond

func (e *serverEvents) send(r *enginev1.RunResponse) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.done {
		return errRunOver
	}
	if err := e.stream.Send(r); err != nil {
		return fmt.Errorf("send event: %w", err)
	}
	return nil
}

func (e *serverEvents) close() {
	e.mu.Lock()
	e.done = true
	e.mu.Unlock()
}

// Progress forwards the first event of a run, the last (step == total) and
// otherwise at most one every progressEvery; the rest are dropped.
func (e *serverEvents) Progress(step, total uint64, unit string) error {
	now := time.Now()
	e.mu.Lock()
	skip := !e.done && !e.lastProgress.IsZero() && now.Sub(e.lastProgress) < progressEvery && step < total
	if !skip {
		e.lastProgress = now
	}
	e.mu.Unlock()
	if skip {
		return nil
	}
	return e.send(&enginev1.RunResponse{Event: &enginev1.RunResponse_Progress{Progress: &enginev1.Progress{
		Step: step, Total: total, Unit: unit,
	}}})
}

// Log sends a log line, cut to MaxLogBytes with a marker (the host cuts
// it there anyway, and a line over MaxMessageBytes would cost the job).
func (e *serverEvents) Log(level, message string) error {
	return e.send(&enginev1.RunResponse{Event: &enginev1.RunResponse_Log{Log: &enginev1.LogLine{
		Level: level, Message: cutLine(message),
	}}})
}

func (e *serverEvents) Output(ext string, p []byte) error {
	for len(p) > 0 {
		n := min(len(p), maxChunk)
		err := e.send(&enginev1.RunResponse{Event: &enginev1.RunResponse_Output{Output: &enginev1.OutputChunk{
			Ext: ext, Data: p[:n],
		}}})
		if err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// Text sends a piece of an llm answer when the host asked for it (see
// StreamText), in parts of at most MaxTextPieceBytes cut at rune
// boundaries; never merged or dropped. Past MaxResultBytes in all it
// sends nothing more and fails as bad input, as the host would.
func (e *serverEvents) Text(piece string) error {
	if !e.streamText {
		return nil
	}
	e.mu.Lock()
	e.textBytes += len(piece)
	over := e.textBytes > MaxResultBytes
	e.mu.Unlock()
	if over {
		return Errorf(ErrBadInput, "the streamed text is over the limit of %d bytes on a result", MaxResultBytes)
	}
	for len(piece) > 0 {
		n := textCut(piece, MaxTextPieceBytes)
		err := e.send(&enginev1.RunResponse{Event: &enginev1.RunResponse_Text{Text: &enginev1.TextDelta{Text: piece[:n]}}})
		if err != nil {
			return err
		}
		piece = piece[n:]
	}
	return nil
}

// textCut is where to cut s so the first part is at most n bytes, at a
// rune boundary when one is near.
func textCut(s string, n int) int {
	if len(s) <= n {
		return len(s)
	}
	for i := n; i > n-4 && i > 0; i-- {
		if utf8.RuneStart(s[i]) {
			return i
		}
	}
	return n
}

// Result sends the JSON result; one over MaxResultBytes is not sent, and
// the error returned (which the engine should return from Run) fails the
// job as bad input, as the host would.
func (e *serverEvents) Result(json []byte) error {
	if len(json) > MaxResultBytes {
		return Errorf(ErrBadInput, "the JSON result is %d bytes, over the limit of %d bytes on a result", len(json), MaxResultBytes)
	}
	return e.send(&enginev1.RunResponse{Event: &enginev1.RunResponse_Result{Result: &enginev1.JsonResult{Json: json}}})
}
