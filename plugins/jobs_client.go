package plugins

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	enginev1 "github.com/stokerhq/stoker/proto/engine/v1"
)

// The host's side of the Jobs stream (engine.proto): one long-lived stream
// per plugin process carries every job, so a job costs one message each way
// and no stream set-up. One reader goroutine per stream takes each event
// and, on that goroutine, checks it and passes it to the job's Events (as
// runStream does on the job's own goroutine); the job's Run waits only for
// its outcome.

// jobsGreetTimeout bounds the wait for the plugin's greeting on a Jobs
// stream opened for a job, when the caller's context has no earlier
// deadline: a plugin answers it in a round trip.
const jobsGreetTimeout = 10 * time.Second

// jobStream is one open Jobs stream.
type jobStream struct {
	c      *grpcClient
	stream grpc.ClientStream
	cancel context.CancelFunc // ends the stream
	done   chan struct{}      // closed when the reader has returned

	sendMu sync.Mutex // guards stream sends

	mu     sync.Mutex // guards the fields below
	calls  map[uint64]*jobCall
	next   uint64
	broken bool // the reader ended: no more calls
}

// jobCall is one job on the stream.
type jobCall struct {
	checks runChecks
	end    chan error // the outcome; buffered, written once

	mu        sync.Mutex // held while an event is passed on; guards abandoned
	abandoned bool       // Run returned (cancelled): pass nothing on
}

// jobStream returns the open Jobs stream, opening one if none is (bounded
// by ctx and jobsGreetTimeout), or nil when the plugin does not serve Jobs
// or a stream cannot be opened now (the job then goes on a Run stream).
func (c *grpcClient) jobStream(ctx context.Context) *jobStream {
	c.jobsMu.Lock()
	defer c.jobsMu.Unlock()
	if c.noJobs || c.closed {
		return nil
	}
	if js := c.jobs; js != nil {
		js.mu.Lock()
		broken := js.broken
		js.mu.Unlock()
		if !broken {
			return js
		}
		c.jobs = nil
	}
	gctx, cancel := context.WithTimeout(ctx, jobsGreetTimeout)
	defer cancel()
	js, err := c.openJobs(gctx)
	if err != nil {
		// A plugin that does not serve Jobs, or no longer greets, is
		// given its jobs on Run streams from now on; a job cancelled
		// meanwhile says nothing about the plugin.
		if ctx.Err() == nil {
			c.noJobs = true
		}
		return nil
	}
	c.jobs = js
	return js
}

// openJobStream opens the Jobs stream ahead of the first job, within ctx.
// A plugin that does not serve Jobs, or does not greet within ctx, is given
// every job on a Run stream.
func (c *grpcClient) openJobStream(ctx context.Context) {
	c.jobsMu.Lock()
	defer c.jobsMu.Unlock()
	if c.noJobs || c.jobs != nil || c.closed {
		return
	}
	js, err := c.openJobs(ctx)
	if err != nil {
		c.noJobs = true
		return
	}
	c.jobs = js
}

// openJobs opens a Jobs stream, waits for the plugin's greeting (within
// ctx) and starts the stream's reader. c.jobsMu is held.
func (c *grpcClient) openJobs(ctx context.Context) (*jobStream, error) {
	sctx, cancel := context.WithCancel(context.Background())
	stream, err := c.conn.NewStream(sctx, &enginev1.EngineService_ServiceDesc.Streams[1],
		enginev1.EngineService_Jobs_FullMethodName, grpc.ForceCodecV2(newFrameCodec()),
		grpc.MaxCallRecvMsgSize(MaxMessageBytes))
	if err != nil {
		cancel()
		return nil, err
	}
	stop := context.AfterFunc(ctx, cancel)
	var frame runFrame
	err = stream.RecvMsg(&frame)
	if !stop() {
		cancel()
		return nil, fmt.Errorf("jobs stream: no greeting: %w", context.Cause(ctx))
	}
	if err != nil {
		cancel()
		return nil, err
	}
	if job, event, err := jobsEvent(frame.buf); err != nil || job != 0 || event != nil {
		cancel()
		return nil, fmt.Errorf("jobs stream: the plugin's first message is not a greeting (job %d, %v)", job, err)
	}
	js := &jobStream{c: c, stream: stream, cancel: cancel, done: make(chan struct{}), calls: map[uint64]*jobCall{}}
	go js.read()
	return js, nil
}

// closeJobs ends the Jobs stream, if one is open, and waits for its reader
// (which returns once an event it is passing on was taken). No stream opens
// after it. It may be called more than once.
func (c *grpcClient) closeJobs() {
	if js := c.stopJobs(); js != nil {
		<-js.done
	}
}

// stopJobs ends the Jobs stream, if one is open, without waiting for its
// reader, which it returns. No stream opens after it.
func (c *grpcClient) stopJobs() *jobStream {
	c.jobsMu.Lock()
	defer c.jobsMu.Unlock()
	c.closed = true
	js := c.jobs
	if js != nil {
		js.cancel()
	}
	return js
}

// run runs req on the stream (see Engine.Run).
func (js *jobStream) run(ctx context.Context, req *RunRequest, ev Events) error {
	call := &jobCall{checks: runChecks{c: js.c, ev: ev, streamText: req.StreamText}, end: make(chan error, 1)}
	js.mu.Lock()
	if js.broken {
		js.mu.Unlock()
		return js.c.streamErr(ctx, errors.New("the job stream ended"))
	}
	js.next++
	id := js.next
	js.calls[id] = call
	js.mu.Unlock()
	if err := js.send(&enginev1.JobsRequest{Job: id, Msg: &enginev1.JobsRequest_Run{Run: runRequestToProto(req)}}); err != nil {
		js.remove(id)
		select {
		case outcome := <-call.end: // the reader ended it first
			return outcome
		default:
		}
		return js.c.streamErr(ctx, err)
	}
	select {
	case outcome := <-call.end:
		return outcome
	case <-ctx.Done():
	}
	call.mu.Lock() // waits for an event being passed on
	call.abandoned = true
	call.mu.Unlock()
	js.remove(id)
	select {
	case outcome := <-call.end:
		return outcome
	default:
	}
	_ = js.send(&enginev1.JobsRequest{Job: id, Msg: &enginev1.JobsRequest_Cancel{Cancel: &enginev1.CancelJob{}}})
	return js.c.streamErr(ctx, ctx.Err())
}

func (js *jobStream) send(m *enginev1.JobsRequest) error {
	js.sendMu.Lock()
	defer js.sendMu.Unlock()
	return js.stream.SendMsg(m)
}

func (js *jobStream) remove(id uint64) {
	js.mu.Lock()
	delete(js.calls, id)
	js.mu.Unlock()
}

// read takes the stream's events until it ends, passing each to its job;
// events of jobs no longer waited for are dropped. When the stream ends,
// every job on it ends: a message over the receive limit is the plugin's
// breach (the plugin and the connection live on; the next job opens a new
// stream), anything else a broken stream (see Plugin.Run).
func (js *jobStream) read() {
	defer close(js.done)
	var frame runFrame
	for {
		err := js.stream.RecvMsg(&frame)
		if err != nil {
			js.end(err)
			return
		}
		id, event, err := jobsEvent(frame.buf)
		if err == nil && (id == 0 || event == nil) {
			err = fmt.Errorf("an event of job %d with nothing in it", id)
		}
		if err != nil {
			// Not knowing whose it is, every job on the stream ends.
			js.end(breach("%v", err))
			return
		}
		js.mu.Lock()
		call := js.calls[id]
		js.mu.Unlock()
		if call == nil {
			continue // a job no longer waited for
		}
		call.mu.Lock()
		if call.abandoned {
			call.mu.Unlock()
			continue
		}
		done, outcome := call.checks.event(event)
		call.mu.Unlock()
		if !done {
			continue
		}
		js.remove(id)
		call.end <- outcome
		if !isTerminal(event) {
			// Ended here (a breach, or the receiver is gone): the
			// plugin's job is cancelled, as closing its Run stream would.
			_ = js.send(&enginev1.JobsRequest{Job: id, Msg: &enginev1.JobsRequest_Cancel{Cancel: &enginev1.CancelJob{}}})
		}
	}
}

// isTerminal reports whether the event in its wire form is the plugin's
// Done or Error.
func isTerminal(event []byte) bool {
	_, _, resp, err := decodeEvent(event)
	if err != nil || resp == nil {
		return false
	}
	switch resp.GetEvent().(type) {
	case *enginev1.RunResponse_Done, *enginev1.RunResponse_Error:
		return true
	}
	return false
}

// end ends every job on the stream with the stream's end: err is gRPC's
// error, or the outcome itself when it is a *JobError.
func (js *jobStream) end(err error) {
	js.cancel()
	var outcome error
	var je *JobError
	switch {
	case errors.As(err, &je):
		outcome = je
	case status.Code(err) == codes.ResourceExhausted:
		outcome = overLimit(err)
	default:
		outcome = &JobError{Kind: ErrCrashed, Message: errBrokenStream.Error(), Err: errors.Join(errBrokenStream, err)}
	}
	js.mu.Lock()
	js.broken = true
	calls := js.calls
	js.calls = map[uint64]*jobCall{}
	js.mu.Unlock()
	for _, call := range calls {
		call.end <- outcome
	}
}
