package agent_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/metrics"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/plugins/plugintest"
	"github.com/stokerhq/stoker/plugins/synthetic"
	"github.com/stokerhq/stoker/supervisor/internal/devstudio"
)

var llmTask = map[string]any{"kind": "llm", "messages": []map[string]string{{"role": "user", "content": "Say hello to the farm"}}, "maxTokens": 16}

// BenchmarkPipelineRoundTrip is one job round trip, submit → result stored,
// through the dev studio, the WebSocket session, the runner, the engine
// host and a real synthetic plugin process. Compare with
// BenchmarkSyntheticInProcess, the same engine work called in-process: the
// difference is the pipeline's own overhead.
func BenchmarkPipelineRoundTrip(b *testing.B) {
	s := startStack(b, stackOptions{})
	raw, _ := json.Marshal(llmTask)
	s.submit(b, "synthetic-llm", llmTask) // warm: plugin connection, first offer
	durs := make([]time.Duration, 0, b.N)
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
		durs = append(durs, time.Since(start))
	}
	reportPercentiles(b, durs)
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
// the peak Go heap of this process — the supervisor and the dev studio
// together — sampled every millisecond.
func BenchmarkLargeOutput(b *testing.B) {
	s := startStack(b, stackOptions{catalog: func(_ *devstudio.Server, c *devstudio.Catalog) { addEntry(b, c, "e2e-blob", "e2e") }})
	const side = 8192
	task := map[string]any{"kind": "image", "prompt": "blob-seed", "width": side, "height": side}
	s.submit(b, "e2e-blob", task) // warm
	runtime.GC()
	peak := sampleHeap(b)
	b.SetBytes(side * side)
	b.ResetTimer()
	for b.Loop() {
		if v := s.submit(b, "e2e-blob", task); v.Status != devstudio.JobCompleted {
			b.Fatalf("%+v", v)
		}
	}
	b.StopTimer()
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
