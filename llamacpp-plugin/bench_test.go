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
// points them at a real GGUF instead. Thread count: 4, llama-simple's (and
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
		if e.loads.Load() != 1 {
			b.Fatalf("%d loads, want 1", e.loads.Load())
		}
	})
}

// llama-simple's own report: the tokens it generated, and llama.cpp's perf
// counters (milliseconds, to two decimals) for prompt evaluation, token
// evaluation and sampling.
var (
	simpleDecoded = regexp.MustCompile(`decoded (\d+) tokens in`)
	simpleTimes   = regexp.MustCompile(`(?m)(?:prompt eval|\beval|samplers) time =\s*([0-9.]+) ms`)
)

// BenchmarkGeneration measures greedy generation through the plugin over
// real go-plugin gRPC (prompt processing, sampling and the result included,
// model resident) and through
// llama-simple on the same model, prompt and thread count, and reports
// both rates and their ratio (plugin/llama-simple).
func BenchmarkGeneration(b *testing.B) {
	path := benchModel(b)
	bin := llamaSimple(b)
	const n = 128
	eng := newEngine(nil)
	eng.threads = benchThreads
	defer eng.Close()
	e := plugintest.Connect(b, eng)
	req := llmRequest("bench", path, "Hello there")
	req.Task.LLM.MaxTokens = n
	if err := e.Run(context.Background(), req, &recorder{}); err != nil { // load
		b.Fatal(err)
	}
	var pluginTokens, simpleTokens int
	var pluginTime, simpleTime time.Duration
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
		simpleTokens += toks
		for _, tm := range times {
			ms, _ := strconv.ParseFloat(tm[1], 64)
			simpleTime += time.Duration(ms * float64(time.Millisecond))
		}
	}
	pluginRate := float64(pluginTokens) / pluginTime.Seconds()
	simpleRate := float64(simpleTokens) / simpleTime.Seconds()
	b.ReportMetric(pluginRate, "plugin-tok/s")
	b.ReportMetric(simpleRate, "llama-simple-tok/s")
	b.ReportMetric(pluginRate/simpleRate, "ratio")
}
