package agent_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
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

	"github.com/stokerhq/stoker/internal/syncbuf"
	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/plugins/plugintest"
	"github.com/stokerhq/stoker/supervisor/internal/childproc"
	"github.com/stokerhq/stoker/supervisor/internal/devstudio"
	"github.com/stokerhq/stoker/synthetic-plugin/synthetic"
)

var llmTask = map[string]any{"kind": "llm", "messages": []map[string]string{{"role": "user", "content": "Say hello to the farm"}}, "maxTokens": 16}

// BenchmarkPipelineRoundTrip is one job round trip, submit → result stored,
// through the dev studio, the WebSocket session, the runner, the engine
// host and a real synthetic plugin process. Compare with
// BenchmarkSyntheticInProcess, the same engine work called in-process: the
// difference is the pipeline's own overhead. The dev studio and the agent
// run in this process (BenchmarkPipelineRoundTripProcess puts the agent in
// its own); the studio's share is measured apart: worker-p50-µs and
// worker-p99-µs are the worker's part of each job (the offer written to
// its socket → the outcome read by the studio, JobView.OfferedAt and
// ReportedAt), studio-p50-µs the rest (submit, dispatch, storing the
// result, waking the waiter). The process runs on one processor, as
// `stoker agent` does (agentProcs in supervisor/cmd/stoker) unless
// GOMAXPROCS is set, so the dev studio shares it here.
func BenchmarkPipelineRoundTrip(b *testing.B) {
	if os.Getenv("GOMAXPROCS") == "" {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	}
	s := startStack(b, stackOptions{})
	benchRoundTrips(b, s.studio)
}

// BenchmarkPipelineRoundTripProcess is BenchmarkPipelineRoundTrip with the
// agent as a real `stoker agent` process, with the runtime settings its
// main gives it, as on a node: the worker's share is then its process's
// own, beside the dev studio's in this one. BENCH_AGENT_ENV
// (space-separated NAME=value) adds to the agent's environment, e.g.
// GOMAXPROCS=1 to compare.
func BenchmarkPipelineRoundTripProcess(b *testing.B) {
	srv, _, _ := startDevStudio(b, stackOptions{})
	startAgentProcess(b, srv, strings.Fields(os.Getenv("BENCH_AGENT_ENV"))...)
	benchRoundTrips(b, srv)
}

// benchRoundTrips runs b.N synthetic LLM jobs one after another through
// srv and reports the round trip's percentiles and the worker's and the
// studio's shares.
func benchRoundTrips(b *testing.B, srv *devstudio.Server) {
	raw, _ := json.Marshal(llmTask)
	ctx := context.Background()
	run := func() devstudio.JobView {
		id, err := srv.Submit("synthetic-llm", raw)
		if err != nil {
			b.Fatal(err)
		}
		v, err := srv.WaitJob(ctx, id, func(v devstudio.JobView) bool { return v.Status.Done() })
		if err != nil || v.Status != devstudio.JobCompleted {
			b.Fatalf("job %s: %v %+v", id, err, v)
		}
		return v
	}
	run() // warm: plugin connection, first offer
	durs := make([]time.Duration, 0, b.N)
	worker := make([]time.Duration, 0, b.N)
	studio := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		v := run()
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

// startAgentProcess runs `stoker agent` against srv with the synthetic
// plugin, its local API off, until the benchmark ends (then drains it);
// env adds to its environment. It returns once the agent's session is
// welcomed.
func startAgentProcess(b *testing.B, srv *devstudio.Server, env ...string) {
	b.Helper()
	pluginDir := b.TempDir()
	linkPlugin(b, filepath.Join(binDir, "synthetic-plugin"), filepath.Join(pluginDir, "synthetic-plugin"))
	cmd := exec.Command(buildStoker(b), "agent")
	cmd.Env = append(os.Environ(),
		"STOKER_API_BASE_URL="+srv.URL(),
		"STOKER_STATE_DIR="+b.TempDir(),
		"STOKER_PLUGIN_DIR="+pluginDir,
		"STOKER_LISTEN=",
	)
	cmd.Env = append(cmd.Env, env...)
	var tail syncbuf.Buffer
	cmd.Stdout = &tail
	p, err := childproc.Start(cmd, func(line []byte) { tail.Write(append(line, '\n')) }, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := p.Stop(os.Interrupt, 30*time.Second); err != nil {
			b.Errorf("stoker agent: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		ch := srv.Changed()
		if slices.ContainsFunc(srv.Workers(), func(w devstudio.WorkerView) bool { return w.Connected }) {
			return
		}
		select {
		case <-ch:
		case <-p.Done():
			b.Fatalf("stoker agent exited: %v\n%s", p.Err(), tail.String())
		case <-ctx.Done():
			b.Fatalf("stoker agent did not connect:\n%s", tail.String())
		}
	}
}

// buildStoker builds the stoker command into the benchmark's temporary
// directory and returns its path.
func buildStoker(b *testing.B) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "stoker")
	build := exec.Command("go", "build", "-o", bin, "github.com/stokerhq/stoker/supervisor/cmd/stoker")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		b.Fatalf("build stoker: %v", err)
	}
	return bin
}

// BenchmarkLoopbackRoundTrip is the floor under the legs between processes
// in BenchmarkPipelineRoundTripProcess: a 300-byte message (an offer's
// size) to another process and straight back, over loopback TCP (the
// studio's socket) and over a unix socket (go-plugin's), both processes on
// one processor as the agent and the plugins run. Nothing of stoker's is
// in it: it is what this machine charges for one process waking another
// and being woken back.
func BenchmarkLoopbackRoundTrip(b *testing.B) {
	if os.Getenv("GOMAXPROCS") == "" {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	}
	for _, network := range []string{"tcp", "unix"} {
		b.Run(network, func(b *testing.B) {
			addr := "127.0.0.1:0"
			if network == "unix" {
				addr = filepath.Join(b.TempDir(), "echo.sock")
			}
			l, err := net.Listen(network, addr)
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), echoEnv+"="+network+" "+l.Addr().String(), "GOMAXPROCS=1")
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			defer cmd.Wait()
			c, err := l.Accept()
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close() // the echo process ends on EOF
			msg, back := make([]byte, 300), make([]byte, 300)
			durs := make([]time.Duration, 0, b.N)
			for b.Loop() {
				start := time.Now()
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, back); err != nil {
					b.Fatal(err)
				}
				durs = append(durs, time.Since(start))
			}
			reportPercentiles(b, durs)
		})
	}
}

// echoEnv names the variable that makes the test binary the echo process
// of BenchmarkLoopbackRoundTrip: "network address".
const echoEnv = "STOKER_BENCH_ECHO"

// echo connects to the address in echoEnv's value and writes back what it
// reads until EOF; it returns the exit code.
func echo(spec string) int {
	network, addr, _ := strings.Cut(spec, " ")
	c, err := net.Dial(network, addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		return 1
	}
	defer c.Close()
	// A plain read and write, not io.Copy, which would splice between the
	// sockets through a pipe.
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if err == io.EOF {
			return 0
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "echo:", err)
			return 1
		}
		if _, err := c.Write(buf[:n]); err != nil {
			fmt.Fprintln(os.Stderr, "echo:", err)
			return 1
		}
	}
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
	// As stoker agent's main does (gcPercent and agentProcs in
	// supervisor/cmd/stoker); the plain upload it is set beside runs as
	// any Go program does.
	defer debug.SetGCPercent(debug.SetGCPercent(50))
	if os.Getenv("GOMAXPROCS") == "" {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	}
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
	bin := buildStoker(b)
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
