package devstudio

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"runtime"
	"strings"
	"testing"

	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

// prngReader yields n deterministic pseudo-random bytes without holding
// them.
type prngReader struct {
	r *rand.ChaCha8
	n int64
}

func (p *prngReader) Read(b []byte) (int, error) {
	if p.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > p.n {
		b = b[:p.n]
	}
	p.r.Read(b)
	p.n -= int64(len(b))
	return len(b), nil
}

func newPRNG(seed byte, n int64) *prngReader {
	var s [32]byte
	s[0] = seed
	return &prngReader{r: rand.NewChaCha8(s), n: n}
}

// upload posts a multipart result streamed from body (parts prompt, ext,
// image) and returns the status and the body's sha256.
func upload(t testing.TB, s *Server, workerID, token, jobID, ext string, body io.Reader) (int, string) {
	t.Helper()
	u, err := protocol.HTTPURL(s.URL(), protocol.RouteComplete(workerID, jobID))
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	h := sha256.New()
	go func() {
		err := func() error {
			if err := mw.WriteField(protocol.PartPrompt, "a moss golem"); err != nil {
				return err
			}
			if err := mw.WriteField(protocol.PartExt, ext); err != nil {
				return err
			}
			hdr := textproto.MIMEHeader{}
			hdr.Set("Content-Disposition", fmt.Sprintf(`form-data; name=%q; filename=%q`, protocol.PartFile, protocol.ResultFileName(jobID, ext)))
			hdr.Set("Content-Type", protocol.ContentTypeForExt(ext))
			fw, err := mw.CreatePart(hdr)
			if err != nil {
				return err
			}
			if _, err := io.Copy(io.MultiWriter(fw, h), body); err != nil {
				return err
			}
			return mw.Close()
		}()
		pw.CloseWithError(err)
	}()
	req, err := http.NewRequest(http.MethodPost, u, pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	pr.Close()
	return resp.StatusCode, hex.EncodeToString(h.Sum(nil))
}

// runningImageJob connects a worker and gives it a running image job.
func runningImageJob(t testing.TB, s *Server) (*wsWorker, string) {
	t.Helper()
	w := connect(t, s, protocol.KindImage)
	id := submit(t, s, "synthetic-image", imageTask)
	if o := expect[protocol.Offer](w); o.Claim.JobID != id {
		t.Fatalf("got offer %q, want %q", o.Claim.JobID, id)
	}
	w.send(protocol.Accept{JobID: id})
	waitStatus(t, s, id, JobRunning)
	return w, id
}

func TestUploadStreams64MiB(t *testing.T) {
	s := newServer(t, Config{})
	w, id := runningImageJob(t, s)
	const size = 64 << 20

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	status, sum := upload(t, s, w.id, w.token, id, "webp", newPRNG(1, size))
	runtime.ReadMemStats(&after)
	if status != http.StatusOK {
		t.Fatalf("got status %d, want 200", status)
	}
	v := waitStatus(t, s, id, JobCompleted)
	if v.ResultSHA256 != sum || v.ResultBytes != size || v.ResultExt != "webp" || v.Prompt != "a moss golem" {
		t.Errorf("got %+v, want sha %s, %d bytes, webp", v, sum, size)
	}
	// Both ends together allocated far less than the body: nothing buffered
	// it whole.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > size/2 {
		t.Errorf("upload allocated %d bytes, want well under the %d-byte body", alloc, size)
	}

	resp, err := http.Get(v.ResultURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Header.Get("Content-Type"); got != "image/webp" {
		t.Errorf("result Content-Type: got %q, want image/webp", got)
	}
	if n != size || hex.EncodeToString(h.Sum(nil)) != sum {
		t.Errorf("served result: got %d bytes, want %d with the same sha256", n, size)
	}
}

func TestUploadRejections(t *testing.T) {
	s := newServer(t, Config{})
	w, id := runningImageJob(t, s)
	other := connect(t, s, protocol.KindImage)
	queued := submit(t, s, "synthetic-llm", llmTask) // nobody serves llm: stays queued

	tests := []struct {
		name, worker, token, job, ext string
		want                          int
	}{
		{"bad token", w.id, "nope", id, "webp", http.StatusUnauthorized},
		{"token of another worker", w.id, other.token, id, "webp", http.StatusUnauthorized},
		{"not claimed by this worker", other.id, other.token, id, "webp", http.StatusConflict},
		{"unknown job", w.id, w.token, "job-404", "webp", http.StatusConflict},
		{"queued job never held", w.id, w.token, queued, "webp", http.StatusConflict},
		{"hostile ext", w.id, w.token, id, "../../x", http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _ := upload(t, s, tt.worker, tt.token, tt.job, tt.ext, newPRNG(2, 1024))
			if status != tt.want {
				t.Errorf("got %d, want %d", status, tt.want)
			}
		})
	}
	if v, _ := s.Job(id); v.Status != JobRunning {
		t.Errorf("job after bad uploads: got %s, want still running", v.Status)
	}
	// The right worker can still deliver, after which a repeat is 409.
	if status, _ := upload(t, s, w.id, w.token, id, "webp", newPRNG(3, 1024)); status != http.StatusOK {
		t.Fatalf("got %d, want 200", status)
	}
	if status, _ := upload(t, s, w.id, w.token, id, "webp", newPRNG(3, 1024)); status != http.StatusConflict {
		t.Errorf("repeat upload: got %d, want 409", status)
	}
}

func TestUploadMalformedMultipart(t *testing.T) {
	s := newServer(t, Config{})
	w, id := runningImageJob(t, s)
	u, _ := protocol.HTTPURL(s.URL(), protocol.RouteComplete(w.id, id))
	tests := []struct{ name, ctype, body string }{
		{"not multipart", "application/json", `{}`},
		{"no file part", "multipart/form-data; boundary=B", "--B\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\np\r\n--B--\r\n"},
		{"truncated", "multipart/form-data; boundary=B", "--B\r\nContent-Disposition: form-data; name=\"image\"; filename=\"j.webp\"\r\n\r\nabc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(tt.body))
			req.Header.Set("Content-Type", tt.ctype)
			req.Header.Set("Authorization", "Bearer "+w.token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("got %d, want 400", resp.StatusCode)
			}
		})
	}
	if v, _ := s.Job(id); v.Status != JobRunning {
		t.Errorf("got %s, want still running (nothing lost)", v.Status)
	}
}

func TestUploadStatusHook(t *testing.T) {
	s := newServer(t, Config{Hooks: Hooks{UploadStatus: func(_, _ string, attempt int) int {
		if attempt == 1 {
			return http.StatusInternalServerError
		}
		return 0
	}}})
	w, id := runningImageJob(t, s)
	if status, _ := upload(t, s, w.id, w.token, id, "webp", newPRNG(4, 4096)); status != http.StatusInternalServerError {
		t.Fatalf("first upload: got %d, want 500", status)
	}
	if v, _ := s.Job(id); v.Status != JobRunning {
		t.Fatalf("after 500: got %s, want running", v.Status)
	}
	status, sum := upload(t, s, w.id, w.token, id, "webp", newPRNG(4, 4096))
	if status != http.StatusOK {
		t.Fatalf("second upload: got %d, want 200", status)
	}
	if v := waitStatus(t, s, id, JobCompleted); v.ResultSHA256 != sum {
		t.Errorf("got sha %s, want %s", v.ResultSHA256, sum)
	}
}

func TestUploadAfterDisconnectKeepsResult(t *testing.T) {
	s := newServer(t, Config{Hooks: Hooks{Drop: func(_ string, p Point, _ string) bool { return p == PointUploadStart }}})
	w, id := runningImageJob(t, s)
	status, sum := upload(t, s, w.id, w.token, id, "png", newPRNG(5, 1<<20))
	if status != http.StatusOK {
		t.Fatalf("got %d, want 200 (the result computed across the disconnect is kept)", status)
	}
	if f, err := w.recv(); err == nil {
		t.Errorf("got %#v, want the socket dropped at upload start", f)
	}
	v := waitStatus(t, s, id, JobCompleted)
	if v.ResultSHA256 != sum || v.ResultExt != "png" {
		t.Errorf("got %+v, want the uploaded png", v)
	}
	resp, err := http.Get(v.ResultURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Content-Type"); got != "image/png" {
		t.Errorf("got %q, want image/png", got)
	}
}

func TestUploadNudgesNextOffer(t *testing.T) {
	s := newServer(t, Config{})
	w, id := runningImageJob(t, s)
	next := submit(t, s, "synthetic-image", imageTask)
	if status, _ := upload(t, s, w.id, w.token, id, "webp", newPRNG(6, 10)); status != http.StatusOK {
		t.Fatalf("got %d, want 200", status)
	}
	// No completeAck over WS after an upload (open point 3): the next
	// frame is the next offer.
	if o := expect[protocol.Offer](w); o.Claim.JobID != next {
		t.Errorf("got offer %q, want %q", o.Claim.JobID, next)
	}
}

// BenchmarkUpload measures upload throughput of an 8 MiB result through
// the multipart route, with allocations per upload.
func BenchmarkUpload(b *testing.B) {
	s := newServer(b, Config{ResultsDir: b.TempDir()})
	const size = 8 << 20
	w := connect(b, s, protocol.KindImage)
	b.SetBytes(size)
	b.ReportAllocs()
	var ms runtime.MemStats
	peak := uint64(0)
	for b.Loop() {
		b.StopTimer()
		id := submit(b, s, "synthetic-image", imageTask)
		expect[protocol.Offer](w)
		w.send(protocol.Accept{JobID: id})
		waitStatus(b, s, id, JobRunning)
		b.StartTimer()
		if status, _ := upload(b, s, w.id, w.token, id, "webp", newPRNG(7, size)); status != http.StatusOK {
			b.Fatalf("got %d", status)
		}
		b.StopTimer()
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapInuse)
		b.StartTimer()
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
}
