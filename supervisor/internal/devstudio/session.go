package devstudio

import (
	"errors"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

const (
	// outQueue bounds the frames queued for one session; a worker that
	// falls this far behind is dropped.
	outQueue = 256
	// writeTimeout bounds one frame write.
	writeTimeout = 10 * time.Second
	// closeGrace is how long the reader waits for the worker's close reply
	// after the server sent a close frame.
	closeGrace = 2 * time.Second
)

type outKind int

const (
	outText outKind = iota
	outRaw
	outClose
)

type outMsg struct {
	kind    outKind
	msgType int // outRaw: websocket message type
	data    []byte
	code    int // outClose
	// sending, if set, is told when the frame's write begins (the worker
	// may have read it before the write returns).
	sending func(time.Time)
}

// session is one WebSocket connection of a worker. The fields after mu's
// comment are guarded by Server.mu; conn is written only by writeLoop (and
// closed by anyone: gorilla allows Close concurrently).
type session struct {
	srv         *Server
	id          int
	workerID    string
	token       string // the bearer of the upgrade; hello must repeat it
	conn        *websocket.Conn
	connectedAt time.Time
	out         chan outMsg
	done        chan struct{} // closed when the session has ended
	silent      atomic.Bool   // Hooks: send nothing, keep TCP open

	// Guarded by Server.mu.
	helloSeen bool
	welcomed  bool
	closing   bool // a close frame is queued; further frames are ignored
	ended     bool
	job       *job // the job offered to or running on this session
	lastBeat  time.Time
}

func (ss *session) lastBeatLocked() time.Time {
	if ss.lastBeat.IsZero() {
		return ss.connectedAt
	}
	return ss.lastBeat
}

// drop closes the socket abruptly (no close frame). Safe to call from any
// goroutine, any number of times.
func (ss *session) drop() { ss.conn.Close() }

// enqueueLocked queues one frame for the writer; a full queue drops the
// session.
func (ss *session) enqueueLocked(f protocol.Frame) {
	b, err := protocol.Encode(f)
	if err != nil {
		ss.srv.log.Error("encode frame", "type", protocol.TypeOf(f), "error", err)
		return
	}
	ss.pushLocked(outMsg{kind: outText, data: b})
}

func (ss *session) pushLocked(m outMsg) {
	if ss.ended || ss.closing {
		return
	}
	if m.kind == outClose {
		ss.closing = true
	}
	select {
	case ss.out <- m:
	default:
		ss.srv.log.Warn("session send queue full; dropping session", "worker", ss.workerID)
		ss.closing = true
		ss.drop()
	}
}

// sendErrorLocked sends an error frame, then closes with the paired code.
func (ss *session) sendErrorLocked(code protocol.ErrorCode, msg string) {
	ss.srv.log.Info("closing session with error", "worker", ss.workerID, "code", code, "message", msg)
	ss.enqueueLocked(protocol.Error{Code: code, Message: msg})
	ss.pushLocked(outMsg{kind: outClose, code: code.CloseCode(), data: []byte(msg)})
}

func (ss *session) violationLocked(msg string) {
	ss.sendErrorLocked(protocol.CodeProtocolViolation, msg)
}

// closeLocked sends a close frame with code and reason (no error frame).
func (ss *session) closeLocked(code int, reason string) {
	ss.pushLocked(outMsg{kind: outClose, code: code, data: []byte(reason)})
}

// writeLoop is the only writer of the connection.
func (ss *session) writeLoop() {
	defer ss.srv.wg.Done()
	for {
		select {
		case <-ss.done:
			return
		case m := <-ss.out:
			if ss.silent.Load() {
				if m.kind == outClose {
					ss.drop()
					return
				}
				continue
			}
			ss.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
			var err error
			switch m.kind {
			case outText:
				if m.sending != nil {
					m.sending(time.Now())
				}
				err = ss.conn.WriteMessage(websocket.TextMessage, m.data)
			case outRaw:
				err = ss.conn.WriteMessage(m.msgType, m.data)
			case outClose:
				err = ss.conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(m.code, string(m.data)))
				if err == nil {
					// Let the reader collect the worker's close reply, but
					// not wait for it forever.
					ss.conn.SetReadDeadline(time.Now().Add(closeGrace))
					return
				}
			}
			if err != nil {
				ss.drop()
				return
			}
		}
	}
}

// handleConnect serves GET /graphics/api/workers/{workerId}/connect.
func (s *Server) handleConnect(w http.ResponseWriter, r *http.Request, workerID string) {
	token, ok := bearer(r)
	s.mu.Lock()
	wk := s.workers[workerID]
	valid := ok && wk != nil && sameHash(hashHex(token), wk.tokenHash)
	s.mu.Unlock()
	if !valid {
		writeJSONError(w, http.StatusUnauthorized, "invalid worker credentials")
		return
	}
	conn, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader answered the client
	}
	conn.SetReadLimit(s.cfg.MaxFrameBytes)

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		conn.Close()
		return
	}
	s.nextSess++
	ss := &session{
		srv: s, id: s.nextSess, workerID: workerID, token: token, conn: conn,
		connectedAt: time.Now(), out: make(chan outMsg, outQueue), done: make(chan struct{}),
	}
	s.sessions[ss] = struct{}{}
	s.wg.Add(2) // this handler's read loop and the writer
	s.notifyLocked()
	s.mu.Unlock()
	defer s.wg.Done()

	go ss.writeLoop()
	s.log.Debug("session connected", "worker", workerID, "session", ss.id)
	s.readLoop(ss)
	s.endSession(ss)
}

func (s *Server) readLoop(ss *session) {
	for {
		mt, data, err := ss.conn.ReadMessage()
		read := time.Now()
		if err != nil {
			s.log.Debug("session read ended", "worker", ss.workerID, "error", err)
			return
		}
		if mt != websocket.TextMessage {
			s.mu.Lock()
			ss.violationLocked("binary frames are not allowed")
			s.mu.Unlock()
			continue
		}
		f, err := protocol.Decode(data)
		if errors.Is(err, protocol.ErrUnknownFrame) {
			s.log.Warn("ignoring unknown frame", "worker", ss.workerID, "error", err)
			continue
		}
		if err != nil {
			s.mu.Lock()
			ss.violationLocked(err.Error())
			s.mu.Unlock()
			continue
		}
		s.handleFrame(ss, f, read)
	}
}

// endSession releases what the session held and wakes waiters.
func (s *Server) endSession(ss *session) {
	s.mu.Lock()
	ss.ended = true
	delete(s.sessions, ss)
	if w := s.workers[ss.workerID]; w != nil && w.session == ss {
		w.session = nil
	}
	if j := ss.job; j != nil {
		if j.status == JobRunning {
			s.releaseLocked(j, "worker disconnected while running the job", true)
		} else {
			s.releaseLocked(j, "", false)
		}
	}
	s.dispatchLocked()
	s.notifyLocked()
	s.mu.Unlock()
	close(ss.done)
	ss.conn.Close()
	s.log.Debug("session ended", "worker", ss.workerID, "session", ss.id)
}

// framePoint maps a received frame to its hook point.
func framePoint(f protocol.Frame) (Point, string) {
	switch v := f.(type) {
	case protocol.Hello:
		return PointHello, ""
	case protocol.Heartbeat:
		return PointHeartbeat, v.CurrentJobID
	case protocol.Accept:
		return PointAccept, v.JobID
	case protocol.Reject:
		return PointReject, v.JobID
	case protocol.CompleteJSON:
		return PointCompleteJSON, v.JobID
	case protocol.Fail:
		return PointFail, v.JobID
	case protocol.LogBatch:
		return PointLogBatch, ""
	}
	return "", ""
}

// handleFrame handles frame f of session ss, read at read.
func (s *Server) handleFrame(ss *session, f protocol.Frame, read time.Time) {
	if drop := s.cfg.Hooks.Drop; drop != nil {
		if p, jobID := framePoint(f); p != "" && drop(ss.workerID, p, jobID) {
			s.log.Info("hook: dropping socket", "worker", ss.workerID, "point", p)
			ss.drop()
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss.closing || ss.ended {
		return
	}
	w := s.workers[ss.workerID]
	if w == nil { // deleted while connected
		ss.sendErrorLocked(protocol.CodeWorkerDeleted, "worker deleted")
		return
	}
	if hello, ok := f.(protocol.Hello); ok {
		s.helloLocked(ss, w, hello)
		return
	}
	if !ss.helloSeen {
		ss.violationLocked("hello must be the first frame")
		return
	}
	if !ss.welcomed {
		ss.violationLocked("session not authenticated")
		return
	}
	now := time.Now()
	switch v := f.(type) {
	case protocol.Heartbeat:
		ss.lastBeat = now
		w.lastBeat = now
		w.caps, w.hasCaps = v.Capabilities, true
		w.holdOffers = false
		ss.enqueueLocked(protocol.HeartbeatAck{})
		if ss.job == nil {
			s.dispatchLocked() // self-heal
		}
		s.notifyLocked()
	case protocol.LogBatch:
		w.addLogsLocked(v.Entries, s.cfg.LogRing)
		s.notifyLocked()
	case protocol.Accept:
		j := s.jobs[v.JobID]
		if j == nil || j.holder != ss || j.status != JobOffered {
			ss.violationLocked("accept for unknown jobId")
			return
		}
		s.stats.Accepts++
		j.status, j.updated = JobRunning, now
		s.notifyLocked()
	case protocol.Reject:
		j := s.jobs[v.JobID]
		if j == nil || j.holder != ss {
			s.log.Warn("reject for a job not held by this session", "worker", ss.workerID, "job", v.JobID)
			return
		}
		if transientReject(v) {
			w.holdOffers = true
			s.releaseLocked(j, "", false)
		} else {
			j.rejectedBy[w.id] = true
			s.releaseLocked(j, "rejected by "+w.id+": "+v.Reason, true)
		}
		s.dispatchLocked()
		s.notifyLocked()
	case protocol.CompleteJSON:
		j := s.jobs[v.JobID]
		if j == nil || j.holder != ss {
			s.stats.Stray++
			ss.violationLocked("completeJson for unknown jobId")
			return
		}
		s.stats.Outcomes++
		s.unholdLocked(j)
		j.status, j.updated, j.reported = JobCompleted, now, read
		j.result, j.prompt, j.errMsg = v.Result, v.Prompt, ""
		ss.enqueueLocked(protocol.CompleteAck{JobID: j.id})
		s.dispatchLocked()
		s.notifyLocked()
	case protocol.Fail:
		j := s.jobs[v.JobID]
		if j == nil || j.holder != ss {
			s.stats.Stray++
			ss.violationLocked("fail for unknown jobId")
			return
		}
		s.stats.Outcomes++
		j.retryable, j.reported = v.Retryable, read
		if v.Retryable {
			s.releaseLocked(j, v.Error, true)
		} else {
			s.unholdLocked(j)
			j.attempts++
			j.status, j.errMsg, j.updated = JobFailed, v.Error, now
		}
		ss.enqueueLocked(protocol.FailAck{JobID: j.id})
		s.dispatchLocked()
		s.notifyLocked()
	case protocol.ReadyForMore:
		// Allowed by the schema, never needed: offers are server-driven (R6).
		s.log.Debug("ignoring readyForMore", "worker", ss.workerID)
	default:
		ss.violationLocked("unexpected " + protocol.TypeOf(f) + " frame from a worker")
	}
}

// transientReject reports whether a reject is busy/paused: by code, or for
// workers without codes by the reference reason texts.
func transientReject(r protocol.Reject) bool {
	if r.Code != "" {
		return r.Code.Transient()
	}
	switch r.Reason {
	case protocol.ReasonBusy, protocol.ReasonPaused, protocol.ReasonOnlyWhenIdle:
		return true
	}
	return false
}

func (s *Server) helloLocked(ss *session, w *worker, h protocol.Hello) {
	if ss.helloSeen {
		ss.violationLocked("duplicate hello")
		return
	}
	if !sameHash(hashHex(h.AuthToken), w.tokenHash) || !sameHash(hashHex(h.AuthToken), hashHex(ss.token)) {
		ss.sendErrorLocked(protocol.CodeAuthFailed, "invalid auth token")
		return
	}
	ss.helloSeen = true
	w.caps, w.hasCaps = h.Capabilities, true
	s.notifyLocked()
	if hold := s.cfg.Hooks.HoldWelcome; hold != nil {
		if ch := hold(ss.workerID); ch != nil {
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				select {
				case <-ch:
				case <-ss.done:
					return
				case <-s.ctx.Done():
					return
				}
				s.mu.Lock()
				defer s.mu.Unlock()
				s.welcomeLocked(ss)
			}()
			return
		}
	}
	s.welcomeLocked(ss)
}

func (s *Server) welcomeLocked(ss *session) {
	w := s.workers[ss.workerID]
	if ss.ended || ss.closing || w == nil {
		return
	}
	now := time.Now()
	ss.welcomed, ss.lastBeat = true, now
	w.welcomes++
	if old := w.session; old != nil && old != ss {
		old.sendErrorLocked(protocol.CodeDuplicateWorker, "another session of this worker connected")
	}
	w.session = ss
	ss.enqueueLocked(protocol.Welcome{WorkerID: w.id, ServerTime: protocol.FormatTimestamp(now)})
	s.notifyLocked()
}
