//go:build llamacpp

package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/plugins/plugintest"
)

// Benchmarks. By default they use the tiny model; STOKER_LLAMA_BENCH_MODEL
// points them at a real GGUF instead. BenchmarkGeneration talks to the
// engine over in-process gRPC, or to a built plugin binary launched through
// go-plugin when STOKER_LLAMA_BENCH_PLUGIN names one. Thread count: 4, llama-simple's (and
// llama.cpp's) default, so the comparison runs the same threads.
//
//	go test -tags llamacpp -run '^$' -bench . -benchtime 5x ./llamacpp-plugin/

const benchThreads = 4

func benchModel(b *testing.B) string {
	if p := os.Getenv("STOKER_LLAMA_BENCH_MODEL"); p != "" {
		return p
	}
	return writeTiny(b, b.TempDir())
}

// BenchmarkJobLatency compares a job that loads its model (a fresh engine)
// with a job on a resident model.
func BenchmarkJobLatency(b *testing.B) {
	path := benchModel(b)
	req := func() *plugins.RunRequest {
		r := llmRequest("bench", path, "Hello there")
		r.Task.LLM.MaxTokens = 8
		return r
	}
	b.Run("first-job", func(b *testing.B) {
		for b.Loop() {
			e := newEngine(nil)
			e.threads = benchThreads
			if err := e.Run(context.Background(), req(), &recorder{}); err != nil {
				b.Fatal(err)
			}
			e.Close()
		}
	})
	b.Run("resident-job", func(b *testing.B) {
		e := newEngine(nil)
		e.threads = benchThreads
		defer e.Close()
		if err := e.Run(context.Background(), req(), &recorder{}); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if err := e.Run(context.Background(), req(), &recorder{}); err != nil {
				b.Fatal(err)
			}
		}
		if e.models.Loads() != 1 {
			b.Fatalf("%d loads, want 1", e.models.Loads())
		}
	})
}

// llama-simple's own report: "decoded N tokens in T s" (the wall time of
// its prompt-and-generation loop, printed to 10 ms), and llama.cpp's perf
// counters (milliseconds, to two decimals) for prompt evaluation, token
// evaluation and sampling.
var (
	simpleDecoded = regexp.MustCompile(`decoded (\d+) tokens in ([0-9.]+) s`)
	simpleTimes   = regexp.MustCompile(`(?m)(?:prompt eval|\beval|samplers) time =\s*([0-9.]+) ms`)
)

// BenchmarkGeneration measures greedy generation through the plugin over
// real go-plugin gRPC (the whole job: template, prompt processing,
// sampling, result; model resident) and through llama-simple on the same
// model, prompt and thread count. It reports tokens/s for the plugin, for
// llama-simple's loop (its wall time: prompt, sampling, printing) and for
// llama-simple's compute alone (llama.cpp's perf counters: prompt eval,
// eval and sampling), and ratio = plugin / llama-simple loop.
func BenchmarkGeneration(b *testing.B) {
	path := benchModel(b)
	bin := llamaSimple(b)
	const n = 512
	var e plugins.Engine
	if bin := os.Getenv("STOKER_LLAMA_BENCH_PLUGIN"); bin != "" {
		// The built plugin as the supervisor runs it: its own process.
		e = plugintest.Launch(b, bin, "STOKER_LLAMA_THREADS="+strconv.Itoa(benchThreads))
	} else {
		eng := newEngine(nil)
		eng.threads = benchThreads
		defer eng.Close()
		e = plugintest.Connect(b, eng)
	}
	req := llmRequest("bench", path, "Hello there")
	req.Task.LLM.MaxTokens = n
	if err := e.Run(context.Background(), req, &recorder{}); err != nil { // load
		b.Fatal(err)
	}
	var pluginTokens, simpleTokens int
	var pluginTime, simpleTime, computeTime time.Duration
	for b.Loop() {
		rec := &recorder{}
		start := time.Now()
		if err := e.Run(context.Background(), req, rec); err != nil {
			b.Fatal(err)
		}
		pluginTime += time.Since(start)
		pluginTokens += completionOf(b, rec).Usage.CompletionTokens

		var stderr bytes.Buffer
		cmd := exec.Command(bin, "-m", path, "-n", strconv.Itoa(n), tinyChatPrompt)
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			b.Fatalf("llama-simple: %v\n%s", err, stderr.String())
		}
		m := simpleDecoded.FindStringSubmatch(stderr.String())
		times := simpleTimes.FindAllStringSubmatch(stderr.String(), -1)
		if m == nil || len(times) != 3 {
			b.Fatalf("llama-simple printed no token count or perf times:\n%s", stderr.String())
		}
		toks, _ := strconv.Atoi(m[1])
		secs, _ := strconv.ParseFloat(m[2], 64)
		simpleTokens += toks
		simpleTime += time.Duration(secs * float64(time.Second))
		for _, tm := range times {
			ms, _ := strconv.ParseFloat(tm[1], 64)
			computeTime += time.Duration(ms * float64(time.Millisecond))
		}
	}
	pluginRate := float64(pluginTokens) / pluginTime.Seconds()
	simpleRate := float64(simpleTokens) / simpleTime.Seconds()
	b.ReportMetric(pluginRate, "plugin-tok/s")
	b.ReportMetric(simpleRate, "llama-simple-tok/s")
	b.ReportMetric(float64(simpleTokens)/computeTime.Seconds(), "llama-compute-tok/s")
	b.ReportMetric(pluginRate/simpleRate, "ratio")
}
