package agent_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/plugins/plugintest"
	"github.com/stokerhq/stoker/supervisor/internal/devstudio"
	"github.com/stokerhq/stoker/synthetic-plugin/synthetic"
)

var llmTask = map[string]any{"kind": "llm", "messages": []map[string]string{{"role": "user", "content": "Say hello to the farm"}}, "maxTokens": 16}

// BenchmarkPipelineRoundTrip is one job round trip, submit → result stored,
// through the dev studio, the WebSocket session, the runner, the engine
// host and a real synthetic plugin process. Compare with
// BenchmarkSyntheticInProcess, the same engine work called in-process: the
// difference is the pipeline's own overhead. The dev studio runs in this
// process too; its own share is measured apart: worker-p50-µs and
// worker-p99-µs are the worker's part of each job (the offer written to
// its socket → the outcome read by the studio, JobView.OfferedAt and
// ReportedAt), studio-p50-µs the rest (submit, dispatch, storing the
// result, waking the waiter).
func BenchmarkPipelineRoundTrip(b *testing.B) {
	s := startStack(b, stackOptions{})
	raw, _ := json.Marshal(llmTask)
	s.submit(b, "synthetic-llm", llmTask) // warm: plugin connection, first offer
	durs := make([]time.Duration, 0, b.N)
	worker := make([]time.Duration, 0, b.N)
	studio := make([]time.Duration, 0, b.N)
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		id, err := s.studio.Submit("synthetic-llm", raw)
		if err != nil {
			b.Fatal(err)
		}
		v, err := s.studio.WaitJob(ctx, id, func(v devstudio.JobView) bool { return v.Status.Done() })
		if err != nil || v.Status != devstudio.JobCompleted {
			b.Fatalf("job %s: %v %+v", id, err, v)
		}
		d := time.Since(start)
		w := v.ReportedAt.Sub(v.OfferedAt)
		durs, worker, studio = append(durs, d), append(worker, w), append(studio, d-w)
	}
	reportPercentiles(b, durs)
	slices.Sort(worker)
	slices.Sort(studio)
	b.ReportMetric(float64(worker[len(worker)/2].Microseconds()), "worker-p50-µs")
	b.ReportMetric(float64(worker[len(worker)*99/100].Microseconds()), "worker-p99-µs")
	b.ReportMetric(float64(studio[len(studio)/2].Microseconds()), "studio-p50-µs")
}

// BenchmarkSyntheticInProcess runs the same synthetic LLM job as
// BenchmarkPipelineRoundTrip, in-process, with no transport at all.
func BenchmarkSyntheticInProcess(b *testing.B) {
	e := synthetic.New(hclog.NewNullLogger())
	req := &plugins.RunRequest{JobID: "bench", Model: "synthetic-llm", Engine: "synthetic", Task: plugins.Task{
		Kind: plugins.KindLLM, LLM: &plugins.LLMTask{Messages: []plugins.Message{{Role: "user", Content: "Say hello to the farm"}}, MaxTokens: 16, Temperature: 0.7},
	}}
	durs := make([]time.Duration, 0, b.N)
	for b.Loop() {
		start := time.Now()
		if _, err := plugintest.Run(context.Background(), e, req); err != nil {
			b.Fatal(err)
		}
		durs = append(durs, time.Since(start))
	}
	reportPercentiles(b, durs)
}

func reportPercentiles(b *testing.B, durs []time.Duration) {
	if len(durs) == 0 {
		return
	}
	slices.Sort(durs)
	p := func(q float64) float64 { return float64(durs[int(q*float64(len(durs)-1))].Microseconds()) }
	b.ReportMetric(p(0.50), "p50-µs")
	b.ReportMetric(p(0.99), "p99-µs")
}

// BenchmarkLargeOutput moves a 64 MiB output through the pipeline (plugin →
// supervisor → multipart upload → dev studio, stored on disk) and reports
// the supervisor's peak Go heap, sampled every millisecond. The dev studio
// runs as a process of its own (`stoker studio`), so the heap measured here
// is the supervisor's alone.
func BenchmarkLargeOutput(b *testing.B) {
	studioURL := startStudioProcess(b, `{"e2e-blob":{"engine":"e2e","files":[],"cliDefaults":{"cfgScale":1,"steps":1,"width":1,"height":1}}}`)
	runAgent(b, studioURL, hclog.NewInterceptLogger(&hclog.LoggerOptions{Name: "stoker", Level: hclog.Info, Output: io.Discard}), "STOKER_LISTEN=")
	const side = 8192
	task := `{"model":"e2e-blob","task":{"kind":"image","prompt":"blob-seed","width":8192,"height":8192}}`
	// As stoker's main does (gcPercent in supervisor/cmd/stoker).
	defer debug.SetGCPercent(debug.SetGCPercent(50))
	submitHTTP(b, studioURL, task) // warm
	runtime.GC()
	live := heapObjects()
	peak := sampleHeap(b)
	b.SetBytes(side * side)
	b.ResetTimer()
	for b.Loop() {
		submitHTTP(b, studioURL, task)
	}
	b.StopTimer()
	b.ReportMetric(float64(live)/(1<<20), "idle-heap-MiB")
	b.ReportMetric(float64(peak())/(1<<20), "peak-heap-MiB")
}

// BenchmarkPlainMultipartUpload is the yardstick for BenchmarkLargeOutput:
// the same 64 MiB streamed as one multipart POST over loopback to a server
// that writes it to disk and hashes it, as the dev studio does.
func BenchmarkPlainMultipartUpload(b *testing.B) {
	dir := b.TempDir()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mr, err := r.MultipartReader()
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			f, _ := os.CreateTemp(dir, "up-")
			h := sha256.New()
			io.Copy(io.MultiWriter(f, h), p)
			f.Close()
			os.Remove(f.Name())
		}
		w.Write([]byte(`{"ok":true}`))
	}))
	defer srv.Close()
	const n = 64 << 20
	b.SetBytes(n)
	for b.Loop() {
		pr, pw := io.Pipe()
		mw := multipart.NewWriter(pw)
		go func() {
			fw, _ := mw.CreateFormFile("image", "job.bin")
			err := synthetic.Blob("blob-seed", n, fw)
			if err == nil {
				err = mw.Close()
			}
			pw.CloseWithError(err)
		}()
		resp, err := http.Post(srv.URL, mw.FormDataContentType(), pr)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
	}
}

// sampleHeap samples the bytes of heap objects every millisecond until the benchmark ends
// and returns a function giving the peak seen.
func sampleHeap(b *testing.B) func() uint64 {
	var peak atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		// runtime/metrics reads without stopping the world.
		sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				metrics.Read(sample)
				if v := sample[0].Value.Uint64(); v > peak.Load() {
					peak.Store(v)
				}
			}
		}
	}()
	b.Cleanup(func() { close(stop); <-done })
	return func() uint64 { return peak.Load() }
}

// startStudioProcess builds stoker and runs `stoker studio` with catalog on
// a free loopback port until the benchmark ends; it returns the studio URL.
func startStudioProcess(b *testing.B, catalog string) string {
	b.Helper()
	dir := b.TempDir()
	bin := filepath.Join(dir, "stoker")
	build := exec.Command("go", "build", "-o", bin, "github.com/stokerhq/stoker/supervisor/cmd/stoker")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		b.Fatalf("build stoker: %v", err)
	}
	cat := filepath.Join(dir, "catalog.json")
	if err := os.WriteFile(cat, []byte(catalog), 0o644); err != nil {
		b.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, "studio", "-listen", addr, "-auto-approve", "-catalog", cat, "-dir", filepath.Join(dir, "studio"))
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	url := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url + "/api/jobs")
		if err == nil {
			resp.Body.Close()
			return url
		}
		if time.Now().After(deadline) {
			b.Fatalf("stoker studio did not come up: %v", err)
		}
		time.Sleep(10 * time.Millisecond) // a process start has no event to wait on
	}
}

// submitHTTP posts a job to the studio's API and polls until it is done.
func submitHTTP(b *testing.B, studioURL, body string) {
	b.Helper()
	resp, err := http.Post(studioURL+"/api/jobs", "application/json", strings.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	var created struct{ ID string }
	json.NewDecoder(resp.Body).Decode(&created)
	resp.Body.Close()
	for {
		resp, err := http.Get(studioURL + "/api/jobs/" + created.ID)
		if err != nil {
			b.Fatal(err)
		}
		var v devstudio.JobView
		json.NewDecoder(resp.Body).Decode(&v)
		resp.Body.Close()
		switch v.Status {
		case devstudio.JobCompleted:
			return
		case devstudio.JobFailed:
			b.Fatalf("job %s failed: %s", v.ID, v.Error)
		}
		time.Sleep(2 * time.Millisecond) // the studio is another process: poll its API
	}
}

// heapObjects is the bytes of heap objects now (live and not yet swept).
func heapObjects() uint64 {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(sample)
	return sample[0].Value.Uint64()
}
