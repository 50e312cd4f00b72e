package hostile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

// Studio is a studio that misbehaves on purpose: a WebSocket endpoint and a
// result upload endpoint on loopback that speak enough of the protocol to
// serve a job (hello/welcome, heartbeatAck, offer, accept, completeJson,
// fail, multipart upload), and let a case flood, stall, garble, oversize
// and close as it likes. It knows one worker id and token.
//
// Create it with NewStudio and Close it when done. Its methods may be
// called from any goroutine.
type Studio struct {
	WorkerID string
	Token    string

	srv   *http.Server
	ln    net.Listener
	conns chan *Conn
	wg    sync.WaitGroup // the server and every Conn's reader

	maxFrame atomic.Int64 // read limit on worker frames; over it gorilla closes with 1009

	mu         sync.Mutex // guards the fields below
	uploadHook func(r *http.Request) int
	uploads    map[string]int64         // job id → result bytes, of uploads answered 200
	uploadWait map[string]chan struct{} // job id → closed when its upload is stored
	closes1009 int
	sessions   int
	live       map[*Conn]struct{}
}

// NewStudio listens on 127.0.0.1 and serves.
func NewStudio(workerID, token string) (*Studio, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	st := &Studio{
		WorkerID: workerID, Token: token, ln: ln,
		conns:      make(chan *Conn, 64),
		uploads:    map[string]int64{},
		uploadWait: map[string]chan struct{}{},
		live:       map[*Conn]struct{}{},
	}
	st.maxFrame.Store(16 << 20)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /graphics/api/workers/{id}/connect", st.serveWS)
	mux.HandleFunc("POST /graphics/api/workers/{id}/jobs/{job}/complete", st.serveUpload)
	st.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	st.wg.Add(1)
	go func() {
		defer st.wg.Done()
		_ = st.srv.Serve(ln)
	}()
	return st, nil
}

// URL is the studio's base URL (api_base_url).
func (st *Studio) URL() string { return "http://" + st.ln.Addr().String() + "/" }

// Close stops serving, closes every session and waits for its goroutines.
func (st *Studio) Close() error {
	err := st.srv.Close()
	st.mu.Lock()
	for c := range st.live {
		c.ws.Close()
	}
	st.mu.Unlock()
	st.wg.Wait()
	return err
}

// SetMaxFrame sets the largest frame the studio reads from the worker; a
// larger one closes the session with 1009 (message too big), as a real
// studio's WebSocket stack does. It applies to sessions opened afterwards
// (default 16 MiB, the dev studio's).
func (st *Studio) SetMaxFrame(n int64) { st.maxFrame.Store(n) }

// SetUploadHook sets a function consulted before an upload's body is read:
// a non-zero status is answered instead (the body is not read).
func (st *Studio) SetUploadHook(f func(r *http.Request) int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.uploadHook = f
}

// Closes1009 counts the sessions the studio closed with 1009.
func (st *Studio) Closes1009() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.closes1009
}

// Sessions counts the sessions welcomed.
func (st *Studio) Sessions() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.sessions
}

// NextConn waits for the next welcomed session.
func (st *Studio) NextConn(ctx context.Context) (*Conn, error) {
	select {
	case c := <-st.conns:
		return c, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("no session from the agent: %w", ctx.Err())
	}
}

func (st *Studio) authorised(r *http.Request) bool {
	return r.PathValue("id") == st.WorkerID && r.Header.Get("Authorization") == "Bearer "+st.Token
}

func (st *Studio) serveWS(w http.ResponseWriter, r *http.Request) {
	if !st.authorised(r) {
		http.Error(w, `{"error":"invalid worker credentials"}`, http.StatusUnauthorized)
		return
	}
	up := websocket.Upgrader{Subprotocols: []string{protocol.Subprotocol}}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	ws.SetReadLimit(st.maxFrame.Load())
	c := newConn(st, ws)
	st.mu.Lock()
	st.live[c] = struct{}{}
	st.mu.Unlock()
	// The handshake is the studio's part: hello must come first and carry
	// the token, then welcome.
	ws.SetReadDeadline(time.Now().Add(15 * time.Second))
	_, data, err := ws.ReadMessage()
	f, derr := protocol.Decode(data)
	hello, ok := f.(protocol.Hello)
	if err != nil || derr != nil || !ok || hello.AuthToken != st.Token {
		c.drop()
		return
	}
	ws.SetReadDeadline(time.Time{})
	if err := c.Send(protocol.Welcome{WorkerID: st.WorkerID, ServerTime: protocol.FormatTimestamp(time.Now())}); err != nil {
		c.drop()
		return
	}
	st.mu.Lock()
	st.sessions++
	st.mu.Unlock()
	st.wg.Add(1)
	go c.readLoop()
	select {
	case st.conns <- c:
	default: // nobody is waiting for it; the case looks at the newest
	}
}

// Upload is a stored binary result.
type Upload struct {
	JobID string
	Bytes int64
}

func (st *Studio) serveUpload(w http.ResponseWriter, r *http.Request) {
	if !st.authorised(r) {
		http.Error(w, `{"error":"invalid worker credentials"}`, http.StatusUnauthorized)
		return
	}
	st.mu.Lock()
	hook := st.uploadHook
	st.mu.Unlock()
	if hook != nil {
		if status := hook(r); status != 0 {
			http.Error(w, fmt.Sprintf(`{"error":"hook: %d"}`, status), status)
			return
		}
	}
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" {
		http.Error(w, `{"error":"not multipart"}`, http.StatusBadRequest)
		return
	}
	mr := multipart.NewReader(r.Body, params["boundary"])
	var n int64 = -1
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			http.Error(w, `{"error":"bad body"}`, http.StatusBadRequest)
			return
		}
		m, err := io.Copy(io.Discard, p)
		if err != nil {
			http.Error(w, `{"error":"bad body"}`, http.StatusBadRequest)
			return
		}
		if p.FormName() == protocol.PartFile {
			n = m
		}
	}
	if n < 0 {
		http.Error(w, `{"error":"no file part"}`, http.StatusBadRequest)
		return
	}
	job := r.PathValue("job")
	st.mu.Lock()
	st.uploads[job] = n
	if ch := st.uploadWait[job]; ch != nil {
		close(ch)
		delete(st.uploadWait, job)
	}
	st.mu.Unlock()
	io.WriteString(w, `{"ok":true}`)
}

// uploadDone returns a channel closed once job's upload is stored.
func (st *Studio) uploadDone(job string) <-chan struct{} {
	st.mu.Lock()
	defer st.mu.Unlock()
	ch := make(chan struct{})
	if _, ok := st.uploads[job]; ok {
		close(ch)
		return ch
	}
	if old := st.uploadWait[job]; old != nil {
		return old
	}
	st.uploadWait[job] = ch
	return ch
}

// uploaded reports the size of job's stored upload, if any.
func (st *Studio) uploaded(job string) (int64, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	n, ok := st.uploads[job]
	return n, ok
}

// Conn is one welcomed session of the agent, seen from the studio.
type Conn struct {
	st *Studio
	ws *websocket.Conn

	writeMu sync.Mutex

	// AutoAck answers every heartbeat with heartbeatAck, as a real studio
	// does (on by default).
	AutoAck atomic.Bool
	// ReadDelay, when set, is slept before each frame is read: a studio
	// that reads its answers slowly.
	ReadDelay atomic.Int64

	gateMu sync.Mutex
	gate   chan struct{} // non-nil: the reader waits for it to close

	done    chan struct{} // closed when the reader has ended
	readErr error

	mu      sync.Mutex // guards the fields below
	counts  map[string]int
	waiters map[string]chan protocol.Frame // job id → its watcher
	logs    []protocol.LogEntry            // the last maxKeptLogs entries
	nLogs   int
	rejects map[string]time.Time // job id → when its reject arrived, for probes
	probes  map[string]bool
	tracked map[string]int // job id prefix → rejects received (TrackRejects)
}

const maxKeptLogs = 2000

func newConn(st *Studio, ws *websocket.Conn) *Conn {
	c := &Conn{st: st, ws: ws, done: make(chan struct{}), counts: map[string]int{},
		waiters: map[string]chan protocol.Frame{}, rejects: map[string]time.Time{}, probes: map[string]bool{},
		tracked: map[string]int{}}
	c.AutoAck.Store(true)
	return c
}

func (c *Conn) drop() {
	c.ws.Close()
	c.st.mu.Lock()
	delete(c.st.live, c)
	c.st.mu.Unlock()
}

// Done is closed when the session has ended (the agent closed or dropped
// it, or the studio did).
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err is why the session ended, once Done is closed.
func (c *Conn) Err() error {
	<-c.done
	return c.readErr
}

// Send writes one frame.
func (c *Conn) Send(f protocol.Frame) error {
	b, err := protocol.Encode(f)
	if err != nil {
		return err
	}
	return c.SendRaw(websocket.TextMessage, b)
}

// SendRaw writes one message of type mt (websocket.TextMessage or
// BinaryMessage) as it is: malformed JSON, an unknown type, a binary
// frame.
func (c *Conn) SendRaw(mt int, data []byte) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	c.ws.SetWriteDeadline(time.Now().Add(30 * time.Second))
	return c.ws.WriteMessage(mt, data)
}

// SendHuge writes one text frame whose header announces size bytes and
// streams size bytes of filler after it, through the raw socket: a frame
// no sane reader buffers. It returns how many bytes went before the agent
// hung up.
func (c *Conn) SendHuge(size int64) int64 {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	hdr := []byte{0x81, 127, 0, 0, 0, 0, 0, 0, 0, 0}
	for i := 0; i < 8; i++ {
		hdr[2+i] = byte(uint64(size) >> (56 - 8*i))
	}
	conn := c.ws.UnderlyingConn()
	conn.SetWriteDeadline(time.Now().Add(60 * time.Second))
	if _, err := conn.Write(hdr); err != nil {
		return 0
	}
	chunk := []byte(strings.Repeat("a", 1<<20))
	var sent int64
	for sent < size {
		n, err := conn.Write(chunk[:min(int64(len(chunk)), size-sent)])
		sent += int64(n)
		if err != nil {
			break
		}
	}
	return sent
}

// Close sends a close frame with code and text, and closes the socket.
func (c *Conn) Close(code int, text string) {
	c.writeMu.Lock()
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(5*time.Second))
	c.writeMu.Unlock()
	c.drop()
}

// HoldReads stops reading the agent's frames until the returned func is
// called: once the socket buffers are full, the agent's writes block.
func (c *Conn) HoldReads() (release func()) {
	g := make(chan struct{})
	c.gateMu.Lock()
	c.gate = g
	c.gateMu.Unlock()
	return sync.OnceFunc(func() {
		c.gateMu.Lock()
		c.gate = nil
		c.gateMu.Unlock()
		close(g)
	})
}

// Count returns how many frames of type typ the studio read.
func (c *Conn) Count(typ string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[typ]
}

// Logs returns the last shipped log entries the studio kept, and how many
// it received in all.
func (c *Conn) Logs() ([]protocol.LogEntry, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]protocol.LogEntry(nil), c.logs...), c.nLogs
}

// Probe marks job ids whose reject times are recorded (see RejectedAt).
func (c *Conn) Probe(jobID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.probes[jobID] = true
}

// TrackRejects counts the rejects received from now on for job ids that
// start with prefix (see Rejects).
func (c *Conn) TrackRejects(prefix string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tracked[prefix] = 0
}

// Rejects returns the rejects received for job ids with a tracked prefix.
func (c *Conn) Rejects(prefix string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tracked[prefix]
}

// RejectedAt reports when the reject of a probed job arrived.
func (c *Conn) RejectedAt(jobID string) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.rejects[jobID]
	return t, ok
}

// watch returns a channel that receives every accept, reject,
// completeJson and fail frame for job until stop is called.
func (c *Conn) watch(job string) (frames <-chan protocol.Frame, stop func()) {
	ch := make(chan protocol.Frame, 16)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waiters[job] = ch
	return ch, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.waiters[job] == ch {
			delete(c.waiters, job)
		}
	}
}

func jobOf(f protocol.Frame) string {
	switch v := f.(type) {
	case protocol.Accept:
		return v.JobID
	case protocol.Reject:
		return v.JobID
	case protocol.CompleteJSON:
		return v.JobID
	case protocol.Fail:
		return v.JobID
	}
	return ""
}

func (c *Conn) readLoop() {
	defer c.st.wg.Done()
	defer close(c.done)
	defer c.drop()
	for {
		c.gateMu.Lock()
		g := c.gate
		c.gateMu.Unlock()
		if g != nil {
			select {
			case <-g:
			case <-time.After(5 * time.Minute): // a case that forgot to release
			}
		}
		if d := time.Duration(c.ReadDelay.Load()); d > 0 {
			time.Sleep(d) // the pace of a slow reader
		}
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			if errors.Is(err, websocket.ErrReadLimit) {
				c.st.mu.Lock()
				c.st.closes1009++
				c.st.mu.Unlock()
			}
			c.readErr = err
			return
		}
		f, err := protocol.Decode(data)
		if err != nil {
			continue // a garbled frame from the agent is counted as nothing
		}
		typ := protocol.TypeOf(f)
		if _, ok := f.(protocol.Heartbeat); ok && c.AutoAck.Load() {
			_ = c.Send(protocol.HeartbeatAck{})
		}
		c.mu.Lock()
		c.counts[typ]++
		if b, ok := f.(protocol.LogBatch); ok {
			c.nLogs += len(b.Entries)
			c.logs = append(c.logs, b.Entries...)
			if over := len(c.logs) - maxKeptLogs; over > 0 {
				c.logs = append([]protocol.LogEntry(nil), c.logs[over:]...)
			}
		}
		if job := jobOf(f); job != "" {
			if w := c.waiters[job]; w != nil {
				select {
				case w <- f:
				default: // a watcher that stopped reading misses the rest
				}
			}
			if _, ok := f.(protocol.Reject); ok {
				if c.probes[job] {
					c.rejects[job] = time.Now()
				}
				for p := range c.tracked {
					if strings.HasPrefix(job, p) {
						c.tracked[p]++
					}
				}
			}
		}
		c.mu.Unlock()
		switch v := f.(type) {
		case protocol.CompleteJSON:
			_ = c.Send(protocol.CompleteAck{JobID: v.JobID})
		case protocol.Fail:
			_ = c.Send(protocol.FailAck{JobID: v.JobID})
		}
	}
}
