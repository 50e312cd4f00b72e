package devstudio

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testTimeout bounds each wait so a broken test fails instead of hanging;
// it is never what a test measures.
const testTimeout = 20 * time.Second

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

func newServer(t testing.TB, cfg Config) *Server {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func caps(kinds ...protocol.TaskKind) protocol.WorkerCapabilities {
	return protocol.WorkerCapabilities{
		MachineName: "test", Username: "t", AgentVersion: "0.0.1", Engine: "multi",
		VramTotalGb: 24, VramThresholdGb: 12, AutoEnabled: true, AutoStart: true,
		SupportedModels: []string{"synthetic"}, TaskKinds: kinds,
	}
}

// wsWorker is a raw worker-side WebSocket for driving the studio frame by
// frame.
type wsWorker struct {
	t     testing.TB
	id    string
	token string
	conn  *websocket.Conn
	resp  *http.Response
}

func dial(t testing.TB, s *Server, id, token string) (*wsWorker, error) {
	t.Helper()
	u, err := protocol.WebSocketURL(s.URL(), id)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	d := websocket.Dialer{Subprotocols: []string{protocol.Subprotocol}, HandshakeTimeout: testTimeout}
	conn, resp, err := d.Dial(u, h)
	if err != nil {
		return &wsWorker{t: t, resp: resp}, err
	}
	w := &wsWorker{t: t, id: id, token: token, conn: conn, resp: resp}
	t.Cleanup(func() { conn.Close() })
	return w, nil
}

// connect adds a worker, dials, sends hello with kinds and reads welcome.
func connect(t testing.TB, s *Server, kinds ...protocol.TaskKind) *wsWorker {
	t.Helper()
	id, token, err := s.AddWorker("")
	if err != nil {
		t.Fatal(err)
	}
	return connectAs(t, s, id, token, kinds...)
}

func connectAs(t testing.TB, s *Server, id, token string, kinds ...protocol.TaskKind) *wsWorker {
	t.Helper()
	w, err := dial(t, s, id, token)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	w.send(protocol.Hello{AuthToken: token, Capabilities: caps(kinds...)})
	wel := expect[protocol.Welcome](w)
	if wel.WorkerID != id {
		t.Fatalf("welcome: got worker %q, want %q", wel.WorkerID, id)
	}
	return w
}

func (w *wsWorker) send(f protocol.Frame) {
	w.t.Helper()
	b, err := protocol.Encode(f)
	if err != nil {
		w.t.Fatal(err)
	}
	w.sendRaw(websocket.TextMessage, b)
}

func (w *wsWorker) sendRaw(mt int, b []byte) {
	w.t.Helper()
	if err := w.conn.WriteMessage(mt, b); err != nil {
		w.t.Fatalf("write: %v", err)
	}
}

// recv reads the next frame; errors (including close) are returned.
func (w *wsWorker) recv() (protocol.Frame, error) {
	w.conn.SetReadDeadline(time.Now().Add(testTimeout))
	mt, data, err := w.conn.ReadMessage()
	if err != nil {
		return nil, err
	}
	if mt != websocket.TextMessage {
		return nil, errors.New("binary frame from studio")
	}
	return protocol.Decode(data)
}

// expect reads the next frame and requires it to be a T.
func expect[T protocol.Frame](w *wsWorker) T {
	w.t.Helper()
	f, err := w.recv()
	if err != nil {
		w.t.Fatalf("read: got %v, want a %T", err, *new(T))
	}
	v, ok := f.(T)
	if !ok {
		w.t.Fatalf("got %#v, want a %T", f, *new(T))
	}
	return v
}

// expectError reads an error frame with code and then a close with the
// paired code.
func (w *wsWorker) expectError(code protocol.ErrorCode) protocol.Error {
	w.t.Helper()
	e := expect[protocol.Error](w)
	if e.Code != code {
		w.t.Fatalf("error frame: got code %q (%s), want %q", e.Code, e.Message, code)
	}
	w.expectClose(code.CloseCode())
	return e
}

func (w *wsWorker) expectClose(code int) {
	w.t.Helper()
	f, err := w.recv()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) {
		w.t.Fatalf("got frame %#v / err %v, want close %d", f, err, code)
	}
	if ce.Code != code {
		w.t.Fatalf("got close %d %q, want %d", ce.Code, ce.Text, code)
	}
}

func waitStatus(t testing.TB, s *Server, id string, want JobStatus) JobView {
	t.Helper()
	v, err := s.WaitJob(ctxT(t), id, func(v JobView) bool { return v.Status == want })
	if err != nil {
		t.Fatalf("job %s: %v, want status %s", id, err, want)
	}
	return v
}

func submit(t testing.TB, s *Server, model, task string) string {
	t.Helper()
	id, err := s.Submit(model, json.RawMessage(task))
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	return id
}

const llmTask = `{"kind":"llm","messages":[{"role":"user","content":"Say hello"}]}`
const imageTask = `{"kind":"image","prompt":"a moss golem"}`

func errorsAs(err error, target any) bool { return errors.As(err, target) }
