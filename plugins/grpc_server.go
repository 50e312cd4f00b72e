package plugins

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
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
		return nil, callError("describe", err)
	}
	return describeToProto(d), nil
}

// Run serves one job on a stream of its own: the contract's first way, which
// hosts that do not open Jobs still use.
func (s *grpcServer) Run(req *enginev1.RunRequest, stream enginev1.EngineService_RunServer) error {
	pump := startProgressPump()
	defer pump.stop()
	return s.runJob(stream.Context(), &runSink{stream: stream}, 0, req, pump)
}

// Jobs serves the host's long-lived job stream (see engine.proto): every
// job the host starts on it runs on a goroutine of the stream's worker pool,
// its events tagged with the job's number. When the stream ends, every job
// still running on it is cancelled and waited for.
func (s *grpcServer) Jobs(stream enginev1.EngineService_JobsServer) error {
	ctx := stream.Context()
	sink := &jobsSink{stream: stream}
	if err := sink.greet(); err != nil {
		return err
	}
	pump := startProgressPump()
	defer pump.stop()
	w := &jobWorkers{work: make(chan func())}
	defer w.stop()
	var (
		mu      sync.Mutex // guards running
		running = map[uint64]context.CancelCauseFunc{}
	)
	defer func() {
		mu.Lock()
		for _, cancel := range running {
			cancel(errJobsEnded)
		}
		mu.Unlock()
	}()
	for {
		req, err := stream.Recv()
		if err != nil {
			if err == io.EOF || ctx.Err() != nil {
				return nil
			}
			return err
		}
		id := req.GetJob()
		switch m := req.GetMsg().(type) {
		case *enginev1.JobsRequest_Run:
			mu.Lock()
			_, dup := running[id]
			if dup || id == 0 {
				mu.Unlock()
				_ = sink.send(id, errorEvent(Errorf(ErrEngine, "job number %d is 0 or already running on this stream", id)))
				continue
			}
			jctx, cancel := context.WithCancelCause(context.WithValue(ctx, wireJobKey{}, id))
			running[id] = cancel
			mu.Unlock()
			w.dispatch(func() {
				defer func() {
					mu.Lock()
					delete(running, id)
					mu.Unlock()
					cancel(nil)
				}()
				_ = s.runJob(jctx, sink, id, m.Run, pump)
			})
		case *enginev1.JobsRequest_Cancel:
			mu.Lock()
			if cancel, ok := running[id]; ok {
				cancel(errJobCancelled)
			}
			mu.Unlock()
		}
		// Anything else is from a newer host: not for this plugin.
	}
}

var (
	errJobCancelled = errors.New("the host cancelled the job")
	errJobsEnded    = errors.New("the host closed the job stream")
)

// wireJobKey is the context key of a job's number on the Jobs stream.
type wireJobKey struct{}

// WireJob returns the number the job running under ctx has on the plugin's
// Jobs stream; ok is false for a job that came on a Run stream of its own.
// Only a plugin that writes its own wire frames needs it (the faults plugin's
// hostile cases wrap a raw event in a JobsResponse with it).
func WireJob(ctx context.Context) (job uint64, ok bool) {
	job, ok = ctx.Value(wireJobKey{}).(uint64)
	return job, ok
}

// runJob runs one job and sends its events and terminal event through sink.
func (s *grpcServer) runJob(ctx context.Context, sink eventSink, job uint64, req *enginev1.RunRequest, pump *progressPump) error {
	r, err := runRequestFromProto(req)
	if err != nil {
		return sink.send(job, errorEvent(Errorf(ErrBadInput, "%v", err)))
	}
	ev := &serverEvents{ctx: ctx, sink: sink, job: job, pump: pump, streamText: r.StreamText}
	runErr := s.impl.Run(ctx, r, ev)
	if runErr != nil {
		return ev.finish(errorEvent(AsJobError(runErr)))
	}
	return ev.finish(&enginev1.RunResponse{Event: &enginev1.RunResponse_Done{Done: &enginev1.Done{}}})
}

// jobWorkers runs the jobs of one Jobs stream. A job goes to an idle worker
// if there is one, else to a new one, which stays for the jobs after it:
// a plugin serving one job at a time keeps one goroutine for all of them.
type jobWorkers struct {
	work chan func() // unbuffered: a send succeeds only to an idle worker
	wg   sync.WaitGroup
}

func (w *jobWorkers) dispatch(job func()) {
	select {
	case w.work <- job:
		return
	default:
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		job()
		for job := range w.work {
			job()
		}
	}()
}

// stop waits for the jobs running and ends the workers.
func (w *jobWorkers) stop() {
	close(w.work)
	w.wg.Wait()
}

func (s *grpcServer) ListResident(ctx context.Context, _ *enginev1.ListResidentRequest) (*enginev1.ListResidentResponse, error) {
	mm, ok := s.impl.(ModelManager)
	if !ok {
		return &enginev1.ListResidentResponse{}, nil
	}
	models, err := mm.Resident(ctx)
	if err != nil {
		return nil, callError("resident", err)
	}
	return residentToProto(models), nil
}

func (s *grpcServer) Unload(ctx context.Context, req *enginev1.UnloadRequest) (*enginev1.UnloadResponse, error) {
	if mm, ok := s.impl.(ModelManager); ok {
		if err := mm.Unload(ctx, req.GetModel()); err != nil {
			return nil, callError(fmt.Sprintf("unload %q", req.GetModel()), err)
		}
	}
	return &enginev1.UnloadResponse{}, nil
}

// callError is the status of a failed unary call: the engine's own error as
// Internal, but a call its context ended (the host's deadline, the host
// gone) as DeadlineExceeded or Canceled, so the host can tell "you took too
// long" from "you broke".
func callError(op string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		st := status.FromContextError(err)
		return status.Errorf(st.Code(), "%s: %v", op, err)
	}
	return status.Errorf(codes.Internal, "%s: %v", op, err)
}

func errorEvent(e *JobError) *enginev1.RunResponse {
	return &enginev1.RunResponse{Event: &enginev1.RunResponse_Error{Error: &enginev1.JobError{
		Kind: string(e.Kind), Message: cutLine(e.Error()),
	}}}
}

// eventSink is where a job's events go: its own Run stream, or the Jobs
// stream tagged with the job's number. A gRPC stream must not be sent on
// from two goroutines at once, so each sink serialises its sends.
type eventSink interface {
	send(job uint64, r *enginev1.RunResponse) error
}

// runSink is a Run stream: one job, its events as they are.
type runSink struct {
	mu     sync.Mutex // guards stream sends
	stream enginev1.EngineService_RunServer
}

func (s *runSink) send(_ uint64, r *enginev1.RunResponse) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stream.Send(r)
}

// jobsSink is the Jobs stream, shared by every job on it.
type jobsSink struct {
	mu     sync.Mutex // guards stream sends
	stream enginev1.EngineService_JobsServer
}

func (s *jobsSink) send(job uint64, r *enginev1.RunResponse) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stream.Send(&enginev1.JobsResponse{Job: job, Event: r})
}

// greet sends the greeting that tells the host the stream is served.
func (s *jobsSink) greet() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stream.Send(&enginev1.JobsResponse{})
}

// errRunOver is returned by Events methods called after Run returned.
var errRunOver = errors.New("plugins: event after Run returned")

// serverEvents sends a run's events through its sink. Engines may report
// from several goroutines; sendMu keeps the job's events in order and none
// after its terminal event. Progress never sends itself: it leaves the
// newest value for the stream's progress pump (latest wins), so an engine
// never waits on the network to report progress.
type serverEvents struct {
	ctx  context.Context // the job's
	sink eventSink
	job  uint64
	pump *progressPump

	sendMu sync.Mutex  // held across each send of this job's events
	done   atomic.Bool // set (under sendMu) before the terminal event
	// held is the result, kept (under sendMu) until the next event or the
	// end of the run: the result and the terminal event then leave
	// together, one write and one wake-up of the host where there were
	// two or three (the pending progress between them).
	held *enginev1.RunResponse

	mu sync.Mutex // guards the fields below
	// err is the first send that failed: the host is gone.
	err error
	// The newest progress not sent yet, if pending.
	pending      bool
	step, total  uint64
	unit         string
	queued       bool      // in the pump's list
	lastProgress time.Time // when a progress event was last sent
	// streamText is RunRequest.StreamText: only then does Text send, and
	// textBytes counts what it sent.
	streamText bool
	textBytes  int
}

// progressEvery is the least time between two progress events of a job on
// the wire. Each event is a stream message costing tens of microseconds; an
// engine reporting every token of a fast model would spend more on its
// reports than on the job. Nobody needs them more often: the stall watchdog
// counts minutes and the status page refreshes in seconds.
const progressEvery = 100 * time.Millisecond

func (e *serverEvents) send(r *enginev1.RunResponse) error {
	e.sendMu.Lock()
	defer e.sendMu.Unlock()
	if e.done.Load() {
		return errRunOver
	}
	return e.sendLocked(r)
}

// sendLocked sends the held result, if any, then r; e.sendMu is held.
func (e *serverEvents) sendLocked(r *enginev1.RunResponse) error {
	if h := e.held; h != nil {
		e.held = nil
		if err := e.sendOneLocked(h); err != nil {
			return err
		}
	}
	return e.sendOneLocked(r)
}

// sendOneLocked sends r; e.sendMu is held.
func (e *serverEvents) sendOneLocked(r *enginev1.RunResponse) error {
	if err := e.sink.send(e.job, r); err != nil {
		err = fmt.Errorf("send event: %w", err)
		e.mu.Lock()
		if e.err == nil {
			e.err = err
		}
		e.mu.Unlock()
		return err
	}
	return nil
}

// finish sends the progress still pending (the newest value always reaches
// the host before the outcome), then the terminal event r.
func (e *serverEvents) finish(r *enginev1.RunResponse) error {
	e.sendMu.Lock()
	defer e.sendMu.Unlock()
	e.done.Store(true)
	if p, _ := e.takeProgress(time.Now(), true); p != nil {
		_ = e.sendLocked(p)
	}
	return e.sendLocked(r)
}

// Progress records the newest progress and returns at once: the progress
// pump sends it, the first of a run at once and then at most one every
// progressEvery, always the newest value. The value pending when the run
// ends is sent before its outcome. It returns an error once the job is
// cancelled or the host is gone.
func (e *serverEvents) Progress(step, total uint64, unit string) error {
	if e.done.Load() {
		return errRunOver
	}
	if err := e.ctx.Err(); err != nil {
		return context.Cause(e.ctx)
	}
	e.mu.Lock()
	if e.err != nil {
		err := e.err
		e.mu.Unlock()
		return err
	}
	e.pending, e.step, e.total, e.unit = true, step, total, unit
	poke := !e.queued
	e.queued = true
	e.mu.Unlock()
	if poke {
		e.pump.add(e)
	}
	return nil
}

// takeProgress returns the pending progress as an event and marks it sent
// at now, if it may go at now (always when force); else nil, and when it
// may go later, wait is when.
func (e *serverEvents) takeProgress(now time.Time, force bool) (r *enginev1.RunResponse, wait time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.pending {
		e.queued = false
		return nil, time.Time{}
	}
	if !force && !e.lastProgress.IsZero() && e.step < e.total {
		if next := e.lastProgress.Add(progressEvery); now.Before(next) {
			return nil, next
		}
	}
	e.pending, e.queued, e.lastProgress = false, false, now
	return &enginev1.RunResponse{Event: &enginev1.RunResponse_Progress{Progress: &enginev1.Progress{
		Step: e.step, Total: e.total, Unit: e.unit,
	}}}, time.Time{}
}

// sendProgress is the pump's side: it sends the pending progress if it may
// go at now, and returns when it may go otherwise (zero: nothing waits).
func (e *serverEvents) sendProgress(now time.Time) (wait time.Time) {
	e.sendMu.Lock()
	defer e.sendMu.Unlock()
	if e.done.Load() {
		return time.Time{} // finish sent what was pending
	}
	r, wait := e.takeProgress(now, false)
	if r != nil {
		_ = e.sendLocked(r) // the error is the job's, returned by its next event
	}
	return wait
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

// Result sends the JSON result; one over MaxResultBytes is not sent, and
// the error returned (which the engine should return from Run) fails the
// job as bad input, as the host would.
func (e *serverEvents) Result(json []byte) error {
	if len(json) > MaxResultBytes {
		return Errorf(ErrBadInput, "the JSON result is %d bytes, over the limit of %d bytes on a result", len(json), MaxResultBytes)
	}
	r := &enginev1.RunResponse{Event: &enginev1.RunResponse_Result{Result: &enginev1.JsonResult{Json: json}}}
	e.sendMu.Lock()
	defer e.sendMu.Unlock()
	if e.done.Load() {
		return errRunOver
	}
	if e.held != nil {
		// A second result: both go, in order, and the host judges.
		return e.sendLocked(r)
	}
	// Held until the next event or the run's end (see held); an error
	// from an earlier send still says the host is gone.
	e.held = r
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.err
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

// progressPump sends the progress the jobs of one stream leave pending, on
// a goroutine of its own, so that an engine never waits on the network to
// report progress. A job is in its list from its first pending value until
// that is sent; the pump wakes when a job joins the list or the earliest
// throttled value may go, never once per report.
type progressPump struct {
	mu   sync.Mutex // guards list
	list []*serverEvents

	poke chan struct{} // one slot: "the list grew"
	quit chan struct{}
	done chan struct{}
}

func startProgressPump() *progressPump {
	p := &progressPump{poke: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	go p.loop()
	return p
}

// add puts e in the list and wakes the pump without blocking.
func (p *progressPump) add(e *serverEvents) {
	p.mu.Lock()
	p.list = append(p.list, e)
	p.mu.Unlock()
	select {
	case p.poke <- struct{}{}:
	default:
	}
}

func (p *progressPump) loop() {
	defer close(p.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-p.quit:
			timer.Stop()
			return
		case <-p.poke:
		case <-timer.C:
		}
		p.mu.Lock()
		list := p.list
		p.list = nil
		p.mu.Unlock()
		var next time.Time
		var keep []*serverEvents
		for _, e := range list {
			if wait := e.sendProgress(time.Now()); !wait.IsZero() {
				keep = append(keep, e)
				if next.IsZero() || wait.Before(next) {
					next = wait
				}
			}
		}
		if len(keep) > 0 {
			p.mu.Lock()
			p.list = append(p.list, keep...)
			p.mu.Unlock()
			timer.Reset(time.Until(next))
		}
	}
}

// stop ends the pump and waits for it; it may be called once.
func (p *progressPump) stop() {
	close(p.quit)
	<-p.done
}
