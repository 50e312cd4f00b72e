package studio

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

// slowLink dials connections whose writes go at rate bytes per second once
// slow is set, honouring write deadlines as a kernel would: a write that
// cannot finish by its deadline fails with a timeout after the bytes that
// made it. The pacing stands for bandwidth; it waits for no event.
type slowLink struct {
	rate int64 // bytes per second; 0 takes nothing at all
	slow atomic.Bool
}

func (l *slowLink) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &slowConn{Conn: c, link: l}, nil
}

type slowConn struct {
	net.Conn
	link *slowLink

	mu       sync.Mutex // guards deadline
	deadline time.Time
}

func (c *slowConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return c.Conn.SetWriteDeadline(t)
}

func (c *slowConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

func (c *slowConn) Write(p []byte) (int, error) {
	if !c.link.slow.Load() {
		return c.Conn.Write(p)
	}
	const step = 1024
	n := 0
	for n < len(p) {
		k := min(len(p)-n, step)
		c.mu.Lock()
		dl := c.deadline
		c.mu.Unlock()
		var d time.Duration
		if c.link.rate > 0 {
			d = time.Duration(k) * time.Second / time.Duration(c.link.rate)
		}
		if !dl.IsZero() && (c.link.rate == 0 || time.Now().Add(d).After(dl)) {
			time.Sleep(time.Until(dl))
			return n, &net.OpError{Op: "write", Net: "tcp", Err: os.ErrDeadlineExceeded}
		}
		if c.link.rate == 0 {
			select {} // no deadline and no bandwidth: never returns; tests always set one
		}
		time.Sleep(d)
		m, err := c.Conn.Write(p[n : n+k])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// TestLargeFrameOnSlowLink: a 1 MiB completeJson over a link that moves it
// in about 4 s goes through with a 1 s write timeout and a 1.5 s read-idle
// timeout, since bytes keep moving (before: the write failed at its fixed
// timeout and the job was lost to the session). Each 32 KiB chunk takes
// about 125 ms, well inside both timeouts even on a loaded machine, while
// the whole frame takes longer than either.
func TestLargeFrameOnSlowLink(t *testing.T) {
	link := &slowLink{rate: 256 << 10}
	st := newTestStudio(t)
	var sendErr error
	result := json.RawMessage(`{"text":"` + strings.Repeat("s", 1<<20) + `"}`)
	w := startWorker(t, st, func(c *Config) {
		c.NetDialContext = link.dial
		c.WriteTimeout = time.Second
		c.ReadIdleTimeout = 1500 * time.Millisecond
	})
	w.runner.run = func(ctx context.Context, _ *protocol.JobOfferClaim, rep Reporter) {
		link.slow.Store(true)
		start := time.Now()
		sendErr = rep.CompleteJSON(ctx, result, "p")
		t.Logf("1 MiB completeJson took %v", time.Since(start))
	}
	sc := st.accept(t)
	sc.welcome(t)
	sc.send(t, offer("job-slow"))
	nextOf[protocol.Accept](t, sc)
	if got := nextOf[protocol.CompleteJSON](t, sc); !bytes.Equal(got.Result, result) {
		t.Errorf("completeJson carried %d bytes, want %d", len(got.Result), len(result))
	}
	waitFor(t, w.runner.ended, "RunJob return")
	if sendErr != nil {
		t.Errorf("CompleteJSON = %v, want nil", sendErr)
	}
	if n := w.c.Status().Sessions; n != 1 {
		t.Errorf("%d sessions, want the first one kept", n)
	}
}

// TestStalledWriteBreaksTheSession: a socket that takes no byte fails the
// write within the write timeout and the worker reconnects.
func TestStalledWriteBreaksTheSession(t *testing.T) {
	link := &slowLink{rate: 0}
	st := newTestStudio(t)
	var sendErr error
	w := startWorker(t, st, func(c *Config) {
		c.NetDialContext = link.dial
		c.WriteTimeout = 200 * time.Millisecond
	})
	w.runner.run = func(ctx context.Context, _ *protocol.JobOfferClaim, rep Reporter) {
		link.slow.Store(true)
		sendErr = rep.CompleteJSON(ctx, json.RawMessage(`{"a":1}`), "p")
		link.slow.Store(false)
	}
	sc := st.accept(t)
	sc.welcome(t)
	sc.send(t, offer("job-stall"))
	nextOf[protocol.Accept](t, sc)
	waitFor(t, w.runner.ended, "RunJob return")
	var ne net.Error
	if !errors.As(sendErr, &ne) || !ne.Timeout() {
		t.Errorf("CompleteJSON = %v, want a write timeout", sendErr)
	}
	st.accept(t).welcome(t) // reconnected
}

// uploadClient is an HTTP client over link, with the 60 s-style overall
// timeout the agent gives its client (here 300 ms).
func uploadClient(link *slowLink) *http.Client {
	return &http.Client{Timeout: 300 * time.Millisecond, Transport: &http.Transport{DialContext: link.dial}}
}

// TestUploadOnSlowLink: a 1 MiB upload that takes about 2 s goes through
// with a 300 ms stall timeout (before: the client's overall timeout cut it
// off, on every attempt).
func TestUploadOnSlowLink(t *testing.T) {
	link := &slowLink{rate: 512 << 10}
	st := newTestStudio(t)
	data := bytes.Repeat([]byte("u"), 1<<20)
	var err error
	w := startWorker(t, st, func(c *Config) {
		c.HTTPClient = uploadClient(link)
		c.UploadStallTimeout = 300 * time.Millisecond
	})
	w.runner.run = func(ctx context.Context, _ *protocol.JobOfferClaim, rep Reporter) {
		link.slow.Store(true)
		var opens atomic.Int32
		start := time.Now()
		err = rep.Upload(ctx, "png", "p", opener(data, &opens))
		t.Logf("1 MiB upload took %v in %d attempt(s)", time.Since(start), opens.Load())
	}
	sc := st.accept(t)
	sc.autoAck.Store(true)
	sc.welcome(t)
	sc.send(t, offer("job-up"))
	nextOf[protocol.Accept](t, sc)
	waitFor(t, w.runner.ended, "RunJob return")
	if err != nil {
		t.Fatalf("Upload = %v, want nil", err)
	}
	if ups := st.uploadList(); len(ups) != 1 || !bytes.Equal(ups[0].data, data) {
		t.Errorf("%d uploads, want one with the whole result", len(ups))
	}
}

// TestUploadStallFails: a studio that takes no byte of the body makes the
// upload fail after the stall timeout (each attempt), not hang.
func TestUploadStallFails(t *testing.T) {
	st := newTestStudio(t)
	block := make(chan struct{})
	defer close(block)
	st.mu.Lock()
	st.uploadFirst = func(w http.ResponseWriter, r *http.Request) bool {
		select { // reads nothing, answers nothing
		case <-block:
		case <-r.Context().Done():
		}
		return true
	}
	st.mu.Unlock()
	var err error
	w := startWorker(t, st, func(c *Config) {
		c.HTTPClient = &http.Client{} // no overall timeout at all
		c.UploadStallTimeout = 200 * time.Millisecond
	})
	w.runner.run = func(ctx context.Context, _ *protocol.JobOfferClaim, rep Reporter) {
		var opens atomic.Int32
		// More than the socket buffers take, so the body stalls.
		err = rep.Upload(ctx, "png", "p", opener(bytes.Repeat([]byte("x"), 64<<20), &opens))
	}
	sc := st.accept(t)
	sc.autoAck.Store(true)
	sc.welcome(t)
	sc.send(t, offer("job-stuck"))
	nextOf[protocol.Accept](t, sc)
	waitFor(t, w.runner.ended, "RunJob return")
	var ue *UploadError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "no progress") {
		t.Errorf("Upload = %v, want an *UploadError saying the upload made no progress", err)
	}
}

// TestUpload411FallsBackToContentLength: a studio (or a proxy in front of
// it) that wants a Content-Length answers 411 to the streamed upload; the
// worker uploads again with the length.
func TestUpload411FallsBackToContentLength(t *testing.T) {
	st := newTestStudio(t)
	var lengths []int64
	st.setUpload(func(n int, w http.ResponseWriter, r *http.Request, u *upload) {
		lengths = append(lengths, r.ContentLength)
		if r.ContentLength < 0 {
			http.Error(w, "length required", http.StatusLengthRequired)
			return
		}
		io.WriteString(w, `{"ok":true}`)
	})
	data := bytes.Repeat([]byte("L"), 100_000)
	var opens atomic.Int32
	var err error
	runOneJob(t, st, func(ctx context.Context, rep Reporter) { err = rep.Upload(ctx, "png", "p", opener(data, &opens)) })
	if err != nil {
		t.Fatalf("Upload = %v, want nil", err)
	}
	ups := st.uploadList()
	if len(lengths) != 2 || lengths[0] != -1 || lengths[1] <= int64(len(data)) || !bytes.Equal(ups[1].data, data) {
		t.Errorf("Content-Length per attempt %v (uploads %d); want -1, then the body's length, and the result whole", lengths, len(ups))
	}
}
