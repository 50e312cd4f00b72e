package studio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/hashicorp/go-hclog"

	"github.com/stokerhq/stoker/supervisor/internal/logship"
	"github.com/stokerhq/stoker/supervisor/internal/protocol"
	"github.com/stokerhq/stoker/supervisor/internal/secret"
)

type outcomeKind int

const (
	outDisconnected outcomeKind = iota // reconnect with backoff
	outStopped                         // ctx ended
	outAuthFailed                      // never reconnect
	outFatal                           // never reconnect
)

// outcome is how one session ended.
type outcome struct {
	kind outcomeKind
	err  error
	// welcomed is true when the session reached welcome.
	welcomed bool
	// keepBackoff keeps the reconnect counter even though the session was
	// welcomed (the studio ended it for a fault that may repeat).
	keepBackoff bool
	// closeCode is the studio's close code, when it closed the socket.
	closeCode int
}

// event is what the reader hands the dispatcher: a frame or the error that
// ended reading.
type event struct {
	frame protocol.Frame
	err   error
}

// session is one WebSocket connection, from upgrade to teardown.
type session struct {
	c        *Client
	conn     *websocket.Conn
	log      hclog.Logger
	workerID string
	token    secret.Value

	// writeMu serialises data frame writes (gorilla allows one writer)
	// and guards hbSent.
	writeMu sync.Mutex
	hbSent  uint64 // heartbeats written, in wire order
	// beatNow asks the heartbeat pump for a heartbeat at once (one slot:
	// repeated asks collapse into one).
	beatNow chan struct{}
	lastMu  sync.Mutex
	recent  [4]sentFrame // the last frames written in full, a ring; guarded by lastMu
	nSent   int          // frames written; guarded by lastMu
	// unsent is a log batch whose send failed, settled when the session
	// has ended (see settleLogs); only the log pump and finalFlush touch
	// it, never at the same time.
	unsent logship.Batch

	ackMu   sync.Mutex    // guards hbAcked and ackCh
	hbAcked uint64        // heartbeatAcks received (the studio acks each heartbeat, in order)
	ackCh   chan struct{} // closed and replaced at every ack
	// closed is set when teardown starts; later sends fail at once.
	closed atomic.Bool

	// done is closed when teardown starts: helpers stop at their next
	// select, whatever the socket does (I-5).
	done chan struct{}
	// broken is closed on the first write failure; the dispatcher ends the
	// session then.
	broken     chan struct{}
	brokenOnce sync.Once
	brokenErr  error

	// rejects holds the rejects waiting for the reject pump (R9).
	rejects *rejectQueue

	// wg counts the reader, the pumps and an offer waiting for the slot.
	wg sync.WaitGroup
}

// limited returns the session's logger for a line a studio can provoke
// once per frame, or a logger that discards it when too many of its kind
// were logged lately (see logLimit). A line let through after some were
// held back carries their count.
func (s *session) limited(kind string) hclog.Logger {
	ok, n := s.c.logLimit.allow(kind)
	switch {
	case !ok:
		return s.c.nullLog
	case n > 0:
		return s.log.With("suppressed_similar", n)
	}
	return s.log
}

// sentFrame describes a frame written to the socket.
type sentFrame struct {
	typ     string
	bytes   int
	entries int // of a logBatch
}

// readIdleError is the reader's report of a silent socket (I-4).
type readIdleError struct{ d time.Duration }

func (e readIdleError) Error() string {
	return fmt.Sprintf("no frames from server for %v; treating connection as dead", e.d)
}

// protocolError is a frame the worker cannot accept.
type protocolError struct{ msg string }

func (e protocolError) Error() string { return "protocol error: " + e.msg }

const maxBodyInLog = 300

// runSession is one attempt: connect, hello, welcome gate, dispatch,
// teardown (§5.2).
func (c *Client) runSession(ctx context.Context, workerID string, token secret.Value) outcome {
	c.setState(StateConnecting)
	c.update(func(s *Status) { s.WorkerID = workerID })
	u, err := protocol.WebSocketURL(c.cfg.BaseURL, workerID)
	if err != nil {
		// Configuration cannot get better by retrying, but the reference
		// treats every pre-session failure as a disconnect; keep it so an
		// operator fixing the config file does not need a restart.
		return outcome{kind: outDisconnected, err: err}
	}
	log := c.log.With("worker_id", workerID)
	log.Info("connecting to studio", "url", u)
	conn, out, ok := c.dial(ctx, u, token)
	if !ok {
		return out
	}
	s := &session{
		c:        c,
		conn:     conn,
		log:      log,
		workerID: workerID,
		token:    token,
		done:     make(chan struct{}),
		broken:   make(chan struct{}),
		beatNow:  make(chan struct{}, 1),
		rejects:  newRejectQueue(),
	}
	c.update(func(st *Status) { st.Connected = true })
	return s.run(ctx)
}

// dial connects within ConnectTimeout (§3.2, I-6, I-20).
func (c *Client) dial(ctx context.Context, u string, token secret.Value) (*websocket.Conn, outcome, bool) {
	dctx, cancel := context.WithTimeout(ctx, c.cfg.ConnectTimeout)
	defer cancel()
	d := websocket.Dialer{
		Proxy:            http.ProxyFromEnvironment,
		HandshakeTimeout: c.cfg.ConnectTimeout,
		Subprotocols:     []string{protocol.Subprotocol},
		NetDialContext:   c.cfg.NetDialContext,
	}
	h := http.Header{}
	h.Set("Authorization", "Bearer "+token.Reveal())
	conn, resp, err := d.DialContext(dctx, u, h)
	if err == nil {
		if got := conn.Subprotocol(); got != protocol.Subprotocol {
			// The studio echoes it; tolerate one that does not rather than
			// refuse a working studio.
			c.log.Warn("studio did not echo the subprotocol", "want", protocol.Subprotocol, "got", got)
		}
		conn.SetReadLimit(c.cfg.MaxFrameBytes)
		return conn, outcome{}, true
	}
	if ctx.Err() != nil {
		return nil, outcome{kind: outStopped}, false
	}
	if resp != nil {
		body := ""
		if resp.Body != nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, maxBodyInLog))
			resp.Body.Close()
			body = strings.TrimSpace(string(b))
		}
		if resp.StatusCode == http.StatusUnauthorized {
			return nil, outcome{kind: outAuthFailed, err: fmt.Errorf("upgrade refused with 401: %s", body)}, false
		}
		err = fmt.Errorf("upgrade refused with %d: %s", resp.StatusCode, body)
	} else if ne := net.Error(nil); dctx.Err() != nil || (errors.As(err, &ne) && ne.Timeout()) {
		err = fmt.Errorf("connect timed out after %v: %w", c.cfg.ConnectTimeout, err)
	} else {
		err = fmt.Errorf("connect: %w", err)
	}
	c.log.Warn("connect failed", "error", err)
	return nil, outcome{kind: outDisconnected, err: err}, false
}

func (s *session) run(ctx context.Context) outcome {
	c := s.c
	caps := c.capabilities()
	s.log.Info(summarize(caps))
	if err := s.send(protocol.Hello{AuthToken: s.token.Reveal(), Capabilities: caps}); err != nil {
		s.teardown("session ended")
		return outcome{kind: outDisconnected, err: fmt.Errorf("hello: %w", err)}
	}
	c.setState(StateAwaitingWelcome)

	events := make(chan event)
	s.wg.Add(1)
	go s.readLoop(events)

	out, welcomed := s.awaitWelcome(ctx, events)
	if !welcomed {
		s.teardown(closeReason(out))
		return out
	}
	c.update(func(st *Status) {
		st.Welcomed, st.Attempt = true, 0
		st.Sessions++
	})
	c.setState(StateWelcomed)

	// Pumps only now (I-1, R2).
	s.wg.Add(2)
	go s.heartbeatPump()
	go s.rejectPump()
	if c.cfg.Logs != nil {
		s.wg.Add(1)
		go s.logPump()
	}
	out = s.dispatch(ctx, events)
	out.welcomed = true
	if out.kind == outStopped {
		s.finalFlush()
	}
	s.teardown(closeReason(out))
	s.settleLogs(out)
	return out
}

func closeReason(out outcome) string {
	switch out.kind {
	case outAuthFailed:
		return "auth failed"
	case outFatal:
		return "protocol violation"
	}
	return "session ended"
}

// awaitWelcome consumes frames until welcome (§5.2 step 5). Anything else
// that arrives first is logged and dropped, offers included (R8).
func (s *session) awaitWelcome(ctx context.Context, events <-chan event) (outcome, bool) {
	for {
		select {
		case <-ctx.Done():
			return outcome{kind: outStopped}, false
		case <-s.broken:
			return s.afterBroken(events), false
		case ev := <-events:
			if ev.err != nil {
				return s.readFailure(ev.err), false
			}
			switch f := ev.frame.(type) {
			case protocol.Welcome:
				s.log.Info("server welcomed worker", "welcomed_id", f.WorkerID, "server_time", f.ServerTime)
				s.c.update(func(st *Status) { st.ServerTime = f.ServerTime })
				return outcome{}, true
			case protocol.Error:
				return s.errorFrame(f), false
			case protocol.Offer:
				s.limited("early-offer").Warn("dropping offer received before welcome", "job", f.Claim.JobID)
			default:
				s.limited("early-frame").Warn("dropping frame received before welcome", "type", protocol.TypeOf(f))
			}
		}
	}
}

// dispatch handles frames until the session ends (§5.2 step 7).
func (s *session) dispatch(ctx context.Context, events <-chan event) outcome {
	for {
		select {
		case <-ctx.Done():
			return outcome{kind: outStopped}
		case <-s.broken:
			return s.afterBroken(events)
		case ev := <-events:
			if ev.err != nil {
				return s.readFailure(ev.err)
			}
			switch f := ev.frame.(type) {
			case protocol.Offer:
				claim := f.Claim
				s.handleOffer(ctx, &claim)
			case protocol.Error:
				return s.errorFrame(f)
			case protocol.HeartbeatAck:
				s.heartbeatAcked()
			case protocol.CompleteAck:
				s.limited("complete-ack").Info("studio confirmed completion of job", "job", f.JobID)
			case protocol.FailAck:
				s.limited("fail-ack").Info("studio confirmed failure of job", "job", f.JobID)
			case protocol.Welcome:
				s.limited("second-welcome").Warn("ignoring a second welcome", "welcomed_id", f.WorkerID)
			default:
				s.limited("unexpected-frame").Warn("ignoring unexpected frame from studio", "type", protocol.TypeOf(f))
			}
		}
	}
}

// brokenGrace is how long a failed write waits for the reader's account of
// the same failure (a close code decides between reconnecting and stopping;
// a write error alone cannot tell).
const brokenGrace = time.Second

// afterBroken decides the outcome after a write failed: the reader's next
// event if it comes within brokenGrace (an error frame or close code it had
// not delivered yet), else a plain disconnect.
func (s *session) afterBroken(events <-chan event) outcome {
	t := time.NewTimer(min(brokenGrace, s.c.cfg.ReadIdleTimeout))
	defer t.Stop()
	for {
		select {
		case ev := <-events:
			if ev.err != nil {
				return s.readFailure(ev.err)
			}
			if f, ok := ev.frame.(protocol.Error); ok {
				return s.errorFrame(f)
			}
			// Any other frame is of no use on a socket that cannot send.
		case <-t.C:
			return outcome{kind: outDisconnected, err: s.brokenErr}
		}
	}
}

// errorFrame maps an error frame to the session's end (§4.2.6 and the
// decisions in the package doc).
func (s *session) errorFrame(f protocol.Error) outcome {
	s.log.Error("studio sent an error", "code", string(f.Code), "message", f.Message)
	switch f.Code {
	case protocol.CodeAuthFailed:
		return outcome{kind: outAuthFailed, err: f}
	case protocol.CodeDuplicateWorker, protocol.CodeWorkerDeleted:
		return outcome{kind: outFatal, err: &FatalError{Code: f.Code, Message: f.Message}}
	}
	// internal_error, protocol_violation, unknown codes: reconnect, without
	// resetting the backoff.
	return outcome{kind: outDisconnected, err: f, keepBackoff: true}
}

// readFailure maps the reader's terminal error to the session's end.
func (s *session) readFailure(err error) outcome {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		code, _ := protocol.ErrorCodeForClose(ce.Code)
		switch ce.Code {
		case protocol.CloseAuthFailed:
			return outcome{kind: outAuthFailed, err: fmt.Errorf("studio closed with %d: %s", ce.Code, ce.Text), closeCode: ce.Code}
		case protocol.CloseDuplicateWorker, protocol.CloseWorkerDeleted:
			return outcome{kind: outFatal, err: &FatalError{Code: code, CloseCode: ce.Code, Message: ce.Text}, closeCode: ce.Code}
		case protocol.CloseProtocolViolation:
			return outcome{kind: outDisconnected, err: fmt.Errorf("studio closed with %d: %s", ce.Code, ce.Text), keepBackoff: true, closeCode: ce.Code}
		case websocket.CloseMessageTooBig:
			// The studio refused a frame as too large. Whatever it was,
			// it is not sent again (see settleLogs); a reconnect loop
			// over it gets growing backoff.
			big := s.suspect()
			s.log.Error("studio refused a frame as too large (close 1009)", "likely_frame", big.typ, "likely_frame_bytes", big.bytes)
			return outcome{kind: outDisconnected, err: fmt.Errorf("studio closed with %d (message too big): %s", ce.Code, ce.Text), keepBackoff: true, closeCode: ce.Code}
		}
		return outcome{kind: outDisconnected, err: fmt.Errorf("studio closed the connection with %d: %s", ce.Code, ce.Text), closeCode: ce.Code}
	}
	var pe protocolError
	if errors.As(err, &pe) {
		s.log.Error("studio sent a frame the worker cannot accept; reconnecting", "error", err)
		return outcome{kind: outDisconnected, err: err, keepBackoff: true}
	}
	return outcome{kind: outDisconnected, err: err}
}

// readLoop reads frames and hands them to the dispatcher. Each read waits at
// most ReadIdleTimeout; pings and pongs are answered by the library inside
// the read and do not extend it (I-4, I-21).
func (s *session) readLoop(events chan<- event) {
	defer s.wg.Done()
	idle := s.c.cfg.ReadIdleTimeout
	for {
		s.conn.SetReadDeadline(time.Now().Add(idle))
		mt, data, err := s.conn.ReadMessage()
		var ev event
		switch {
		case err != nil:
			ev.err = s.classifyReadError(err)
		case mt != websocket.TextMessage:
			ev.err = protocolError{"binary frame from studio"}
		default:
			f, derr := protocol.Decode(data)
			switch {
			case errors.Is(derr, protocol.ErrUnknownFrame):
				s.limited("unknown-frame").Warn("skipping frame of unknown type", "error", derr)
				continue
			case derr != nil:
				ev.err = protocolError{derr.Error()}
			default:
				ev.frame = f
			}
		}
		select {
		case events <- ev:
		case <-s.done:
			return
		}
		if ev.err != nil {
			return
		}
	}
}

func (s *session) classifyReadError(err error) error {
	var ne net.Error
	switch {
	case errors.Is(err, websocket.ErrReadLimit):
		return protocolError{fmt.Sprintf("frame larger than %d bytes", s.c.cfg.MaxFrameBytes)}
	case errors.As(err, &ne) && ne.Timeout():
		return readIdleError{s.c.cfg.ReadIdleTimeout}
	}
	return err
}

// send writes one frame within WriteTimeout. A failed write breaks the
// session: the dispatcher ends it and the client reconnects.
func (s *session) send(f protocol.Frame) error {
	_, err := s.write(f)
	return err
}

// sendHeartbeat sends a heartbeat now and returns its place among the
// session's heartbeats: once that many acks have come back, the studio has
// read every frame sent before it (one socket, read in order).
func (s *session) sendHeartbeat() (uint64, error) {
	return s.write(protocol.Heartbeat{Capabilities: s.c.capabilities(), CurrentJobID: s.c.currentJob()})
}

// beatSoon has the heartbeat pump send a heartbeat at once, on its own
// goroutine, and returns the place that heartbeat will have among the
// session's heartbeats: whatever was written before the call is read by
// the studio before it, so its ack proves the studio read those frames.
// The caller does not wait for the write.
func (s *session) beatSoon() uint64 {
	s.writeMu.Lock()
	next := s.hbSent + 1
	s.writeMu.Unlock()
	select {
	case s.beatNow <- struct{}{}:
	default:
	}
	return next
}

func (s *session) heartbeatAcked() {
	s.ackMu.Lock()
	defer s.ackMu.Unlock()
	s.hbAcked++
	if s.ackCh != nil {
		close(s.ackCh)
		s.ackCh = nil
	}
}

// waitAcked waits until heartbeat seq is acknowledged, for at most d, or
// until the session or ctx ends. It reports whether the ack came.
func (s *session) waitAcked(ctx context.Context, seq uint64, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		s.ackMu.Lock()
		if s.hbAcked >= seq {
			s.ackMu.Unlock()
			return true
		}
		if s.ackCh == nil {
			s.ackCh = make(chan struct{})
		}
		ch := s.ackCh
		s.ackMu.Unlock()
		select {
		case <-ch:
		case <-t.C:
			return false
		case <-s.done:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// write sends f; for a heartbeat it also returns the heartbeat's sequence
// number (1-based) in this session.
func (s *session) write(f protocol.Frame) (uint64, error) {
	data, err := protocol.Encode(f)
	if err != nil {
		return 0, err
	}
	var entries int
	if b, ok := f.(protocol.LogBatch); ok {
		entries = len(b.Entries)
	}
	return s.writeData(protocol.TypeOf(f), data, entries)
}

// writeChunk is how much of a frame must go out within WriteTimeout: a
// write times out on a lack of progress, not on its total time, so a large
// frame on a slow link (1 MB at 50 KB/s takes 20 s) goes through while a
// socket that takes nothing fails within WriteTimeout. 32 KiB in the
// default 10 s is 3.2 KB/s, slower than any link a studio is worth
// talking over.
const writeChunk = 32 << 10

// writeData writes one encoded frame of type typ. A frame over
// MaxSendFrameBytes is not sent: the error wraps ErrFrameTooLarge and the
// session goes on. Any other failure breaks the session.
func (s *session) writeData(typ string, data []byte, entries int) (uint64, error) {
	if limit := s.c.cfg.MaxSendFrameBytes; int64(len(data)) > limit {
		return 0, &FrameTooLargeError{Type: typ, Size: int64(len(data)), Limit: limit}
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.closed.Load() {
		return 0, fmt.Errorf("send %s: %w", typ, ErrSessionClosed)
	}
	if err := s.writeProgressing(data); err != nil {
		if errors.Is(err, websocket.ErrCloseSent) {
			// The reader got the studio's close frame and echoed it; it
			// reports the close code, which decides the outcome.
			return 0, fmt.Errorf("send %s: %w", typ, ErrSessionClosed)
		}
		err = fmt.Errorf("send %s: %w", typ, err)
		s.brokenOnce.Do(func() {
			s.brokenErr = err
			close(s.broken)
		})
		if s.closed.Load() {
			return 0, fmt.Errorf("send %s: %w", typ, ErrSessionClosed)
		}
		return 0, err
	}
	s.lastMu.Lock()
	s.recent[s.nSent%len(s.recent)] = sentFrame{typ: typ, bytes: len(data), entries: entries}
	s.nSent++
	s.lastMu.Unlock()
	if typ == protocol.TypeHeartbeat {
		s.hbSent++
		return s.hbSent, nil
	}
	return 0, nil
}

// writeProgressing writes data as one text message, writeChunk bytes at a
// time, each within WriteTimeout of the last. Bytes that leave also move
// the read-idle deadline on: a studio busy reading a large frame of ours
// sends nothing meanwhile (not even a heartbeatAck, since no heartbeat can
// go out before the frame ends), and a socket that takes our bytes is not
// half-open (I-4).
func (s *session) writeProgressing(data []byte) error {
	timeout := s.c.cfg.WriteTimeout
	s.conn.SetWriteDeadline(time.Now().Add(timeout))
	w, err := s.conn.NextWriter(websocket.TextMessage)
	if err != nil {
		return err
	}
	for off := 0; off < len(data); off += writeChunk {
		end := min(off+writeChunk, len(data))
		s.conn.SetWriteDeadline(time.Now().Add(timeout))
		if _, err := w.Write(data[off:end]); err != nil {
			w.Close()
			return err
		}
		if len(data) > writeChunk {
			s.conn.SetReadDeadline(time.Now().Add(s.c.cfg.ReadIdleTimeout))
		}
	}
	s.conn.SetWriteDeadline(time.Now().Add(timeout))
	return w.Close()
}

// heartbeatPump sends a heartbeat at once and then every HeartbeatInterval;
// a ticker drops missed ticks rather than bursting them (§5.4).
func (s *session) heartbeatPump() {
	defer s.wg.Done()
	t := time.NewTicker(s.c.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		if _, err := s.sendHeartbeat(); err != nil {
			return
		}
		select {
		case <-s.done:
			return
		case <-t.C:
		case <-s.beatNow:
		}
	}
}

// logPump ships the queue at once and then every LogFlushInterval. A
// batch whose send fails is kept until the session has ended (settleLogs
// decides its fate) and the pump stops; the next session ships the queue.
func (s *session) logPump() {
	defer s.wg.Done()
	t := time.NewTicker(s.c.cfg.LogFlushInterval)
	defer t.Stop()
	for {
		if !s.flushLogs() {
			return
		}
		select {
		case <-s.done:
			return
		case <-t.C:
		}
	}
}

// flushLogs ships the queue's content in batches of at most
// MaxLogBatchBytes (so a batch always fits a frame the studio takes); it
// reports false when a send failed.
func (s *session) flushLogs() bool {
	q := s.c.cfg.Logs
	for {
		b := q.NextBatch(s.c.cfg.MaxLogBatchBytes)
		if b.Len() == 0 {
			return true
		}
		if _, err := s.write(protocol.LogBatch{Entries: b.Entries}); err != nil {
			if errors.Is(err, ErrFrameTooLarge) {
				// Only a MaxSendFrameBytes below MaxLogBatchBytes gets here.
				q.Drop(b, err.Error())
				continue
			}
			s.unsent = b
			return false
		}
	}
}

// finalFlush ships what is queued before a graceful stop (I-25).
func (s *session) finalFlush() {
	if s.c.cfg.Logs != nil {
		s.flushLogs()
	}
}

// settleLogs runs once the session has ended and its pumps have stopped. A
// batch the studio refused as too large (close 1009) is dropped with a
// marker, never sent again; another failed batch goes back to the front of
// the queue (spec §8.3 LATER), at most MaxBatchTries times. If the studio
// closed with 1009 right after a batch went out whole, the marker says so.
func (s *session) settleLogs(out outcome) {
	q := s.c.cfg.Logs
	if q == nil {
		return
	}
	b := s.unsent
	s.unsent = logship.Batch{}
	tooBig := out.closeCode == websocket.CloseMessageTooBig
	switch {
	case b.Len() > 0 && tooBig:
		q.Drop(b, "the studio refused it as too large (close 1009)")
	case b.Len() > 0:
		q.Requeue(b)
	case tooBig:
		if big := s.suspect(); big.typ == protocol.TypeLogBatch {
			q.Note(fmt.Sprintf("the studio closed the session as a frame was too large (close 1009) just after a log batch of %d entries (%d bytes); those entries are likely lost", big.entries, big.bytes))
		}
	}
}

// suspect is the frame a close 1009 most likely refused: the largest of
// the last few written (the studio closes as soon as it sees the size; only
// small frames, such as heartbeats, can have gone out after it).
func (s *session) suspect() sentFrame {
	s.lastMu.Lock()
	defer s.lastMu.Unlock()
	var big sentFrame
	for _, f := range s.recent {
		if f.bytes > big.bytes {
			big = f
		}
	}
	return big
}

// teardown ends the session: helpers are told to stop at once, the close
// frame is sent within CloseTimeout, and the socket is closed, which
// unblocks any read or write still in progress (I-5, I-6). It returns when
// every helper has returned.
func (s *session) teardown(reason string) {
	s.closed.Store(true)
	close(s.done)
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, reason)
	if err := s.conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(s.c.cfg.CloseTimeout)); err != nil {
		s.log.Debug("close frame not sent", "error", err)
	}
	s.conn.Close()
	s.wg.Wait()
}

// summarize is the one-line capability summary logged before hello (§5.2).
func summarize(c protocol.WorkerCapabilities) string {
	kinds := make([]string, len(c.TaskKinds))
	for i, k := range c.TaskKinds {
		kinds[i] = string(k)
	}
	return fmt.Sprintf("advertising engine=%s, vram=%.1f/%.1fGB threshold, auto_enabled=%t, kinds=[%s], %d model(s)=[%s]",
		c.Engine, c.VramTotalGb, c.VramThresholdGb, c.AutoEnabled, strings.Join(kinds, ", "),
		len(c.SupportedModels), strings.Join(c.SupportedModels, ", "))
}
