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
			return outcome{kind: outAuthFailed, err: fmt.Errorf("studio closed with %d: %s", ce.Code, ce.Text)}
		case protocol.CloseDuplicateWorker, protocol.CloseWorkerDeleted:
			return outcome{kind: outFatal, err: &FatalError{Code: code, CloseCode: ce.Code, Message: ce.Text}}
		case protocol.CloseProtocolViolation:
			return outcome{kind: outDisconnected, err: fmt.Errorf("studio closed with %d: %s", ce.Code, ce.Text), keepBackoff: true}
		}
		return outcome{kind: outDisconnected, err: fmt.Errorf("studio closed the connection with %d: %s", ce.Code, ce.Text)}
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
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.closed.Load() {
		return 0, fmt.Errorf("send %s: %w", protocol.TypeOf(f), ErrSessionClosed)
	}
	s.conn.SetWriteDeadline(time.Now().Add(s.c.cfg.WriteTimeout))
	if err := s.conn.WriteMessage(websocket.TextMessage, data); err != nil {
		if errors.Is(err, websocket.ErrCloseSent) {
			// The reader got the studio's close frame and echoed it; it
			// reports the close code, which decides the outcome.
			return 0, fmt.Errorf("send %s: %w", protocol.TypeOf(f), ErrSessionClosed)
		}
		err = fmt.Errorf("send %s: %w", protocol.TypeOf(f), err)
		s.brokenOnce.Do(func() {
			s.brokenErr = err
			close(s.broken)
		})
		if s.closed.Load() {
			return 0, fmt.Errorf("send %s: %w", protocol.TypeOf(f), ErrSessionClosed)
		}
		return 0, err
	}
	if _, ok := f.(protocol.Heartbeat); ok {
		s.hbSent++
		return s.hbSent, nil
	}
	return 0, nil
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
		}
	}
}

// logPump drains the ship queue at once and then every LogFlushInterval. A
// batch whose send fails goes back to the front of the queue (LATER) and
// the pump stops; the next session ships it.
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

// flushLogs ships the queue's content; it reports false when the send
// failed (the batch is requeued).
func (s *session) flushLogs() bool {
	q := s.c.cfg.Logs
	batch := q.Drain()
	if len(batch) == 0 {
		return true
	}
	if err := s.send(protocol.LogBatch{Entries: batch}); err != nil {
		q.Requeue(batch)
		return false
	}
	return true
}

// finalFlush ships what is queued before a graceful stop (I-25).
func (s *session) finalFlush() {
	if s.c.cfg.Logs != nil {
		s.flushLogs()
	}
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
