//go:build llamacpp && whispercpp

package agent_test

// Pipeline speed of the real engines (issues 5 and 6): jobs go from the dev
// studio over the WebSocket session to the agent, which fetches the model
// (and the audio input) over loopback HTTP and runs them on the real
// llamacpp-plugin and whisper-plugin processes; each figure is set beside
// llama.cpp's or whisper.cpp's own program on the same model file and
// thread count, run in the same loop so that both see the same machine
// load.
//
//	scripts/install-engines.sh && source scripts/engines/env.sh
//	go test -tags "llamacpp whispercpp" -run '^$' -bench 'PipelineLlama|PipelineWhisper' \
//	    -benchtime 20x ./supervisor/internal/agent/

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// llamaSimpleThreads is the thread count llama-simple uses: it has no
// thread flag and keeps llama.cpp's default context parameters
// (GGML_DEFAULT_N_THREADS = 4, for decoding and for prompt batches). With
// an OpenMP ggml (the installed one links libgomp) OMP_THREAD_LIMIT caps
// it lower: ggml asks OpenMP for n_threads and works with the threads it
// gets. The plugin is given its count through STOKER_LLAMA_THREADS.
const llamaSimpleThreads = 4

// startLlamaStack starts an engineStack running llamacpp-plugin and
// whisper-plugin; llamacpp-plugin gets llamaThreads as
// STOKER_LLAMA_THREADS.
func startLlamaStack(b *testing.B, llamaThreads int) *engineStack {
	b.Helper()
	b.Setenv("STOKER_LLAMA_THREADS", strconv.Itoa(llamaThreads))
	return startEngineStack(b, engineOptions{plugins: []string{"llamacpp-plugin", "whisper-plugin"}})
}

// llmResult is the part of the llamacpp plugin's chat.completion the
// benchmark reads.
type llmResult struct {
	Choices []struct {
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
	ElapsedMs int64 `json:"elapsed_ms"`
}

// llama-simple's own report on stderr: "decoded N tokens in T s, speed: R
// t/s" (the wall time of its main loop: prompt decode, generation,
// sampling, printing each piece), and llama.cpp's perf counters for the
// prompt and for generation ("eval": one run per generated token but the
// last).
var (
	simpleSpeed      = regexp.MustCompile(`decoded (\d+) tokens in [0-9.]+ s, speed: ([0-9.]+) t/s`)
	simplePromptEval = regexp.MustCompile(`prompt eval time =\s*([0-9.]+) ms /\s*(\d+) tokens`)
	simpleEval       = regexp.MustCompile(`\beval time =\s*([0-9.]+) ms /\s*(\d+) runs`)
)

// simpleRun is one llama-simple run as it reports it.
type simpleRun struct {
	decoded      int
	loop         time.Duration // main loop wall: decoded / speed
	promptTokens int
	evalRuns     int
	eval         time.Duration // generation compute (perf counter)
}

// runLlamaSimple runs llama-simple on threads threads (at most
// llamaSimpleThreads) and returns its report.
func runLlamaSimple(b *testing.B, bin, model string, threads, n int, prompt string) simpleRun {
	b.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "-m", model, "-n", strconv.Itoa(n), prompt)
	cmd.Stderr = &stderr
	if threads < llamaSimpleThreads {
		cmd.Env = append(os.Environ(), "OMP_THREAD_LIMIT="+strconv.Itoa(threads))
	}
	if err := cmd.Run(); err != nil {
		b.Fatalf("llama-simple: %v\n%s", err, stderr.String())
	}
	out := stderr.String()
	sp := simpleSpeed.FindStringSubmatch(out)
	pe := simplePromptEval.FindStringSubmatch(out)
	ev := simpleEval.FindStringSubmatch(out)
	if sp == nil || pe == nil || ev == nil {
		b.Fatalf("llama-simple printed no speed or perf counters:\n%s", out)
	}
	var r simpleRun
	r.decoded, _ = strconv.Atoi(sp[1])
	speed, _ := strconv.ParseFloat(sp[2], 64)
	if r.decoded == 0 || speed <= 0 {
		b.Fatalf("llama-simple decoded %d tokens at %v t/s:\n%s", r.decoded, speed, out)
	}
	r.loop = time.Duration(float64(r.decoded) / speed * float64(time.Second))
	r.promptTokens, _ = strconv.Atoi(pe[2])
	evalMs, _ := strconv.ParseFloat(ev[1], 64)
	r.evalRuns, _ = strconv.Atoi(ev[2])
	r.eval = time.Duration(evalMs * float64(time.Millisecond))
	return r
}

// llamaSimpleBin finds llama-simple built from the same llama.cpp source
// as the plugin: $LLAMA_SIMPLE, else <prefix of pkg-config llama>/bin.
func llamaSimpleBin(b *testing.B) string {
	b.Helper()
	if p := os.Getenv("LLAMA_SIMPLE"); p != "" {
		return p
	}
	out, err := exec.Command("pkg-config", "--variable=prefix", "llama").Output()
	if err != nil {
		b.Fatalf("pkg-config llama: %v (source scripts/engines/env.sh, or set LLAMA_SIMPLE)", err)
	}
	p := filepath.Join(strings.TrimSpace(string(out)), "bin", "llama-simple")
	if _, err := os.Stat(p); err != nil {
		b.Fatalf("llama-simple: %v (set LLAMA_SIMPLE for a system llama.cpp)", err)
	}
	return p
}

// requireOpenMP fails b unless bin links libgomp, without which
// OMP_THREAD_LIMIT would not cap its threads and a comparison at fewer
// than llamaSimpleThreads threads would compare different thread counts.
func requireOpenMP(b *testing.B, bin string) {
	b.Helper()
	out, err := exec.Command("ldd", bin).CombinedOutput()
	if err != nil {
		b.Fatalf("ldd %s: %v\n%s", bin, err, out)
	}
	if !bytes.Contains(out, []byte("libgomp")) {
		b.Fatalf("%s does not link OpenMP: its threads cannot be capped below %d; run -bench 'PipelineLlama/threads=%d'", bin, llamaSimpleThreads, llamaSimpleThreads)
	}
}

// tinyLlamaPrompt is the job's one user message as tiny-llama's ChatML
// template renders it with the assistant turn opened: the text
// llama-simple is given, so both sides decode the same prompt tokens (the
// benchmark checks the counts).
const tinyLlamaPrompt = "<|im_start|>user\nHello there<|im_end|>\n<|im_start|>assistant\n"

// BenchmarkPipelineLlama runs greedy tiny-llama chat jobs through the
// whole pipeline and, in the same loop, llama-simple on the same model
// bytes, prompt, token budget and thread count. Sub-benchmarks: threads=4
// (llama-simple's fixed default), threads=<CPUs> (the plugin's default) and
// threads=1 (the fastest for a model this small: no thread barriers), the
// last two with llama-simple capped by OMP_THREAD_LIMIT; each with
// maxTokens 128 and 448 (on this prompt tiny-llama ends by itself after
// 224 tokens, on both sides: the counts are checked every job).
// Metrics:
//
//   - tok/s: completion tokens (the result's usage) ÷ job wall time, from
//     Submit at the dev studio to the completed job stored there (offer,
//     accept, model check, plugin call, chat template, prompt decode,
//     generation, result upload).
//   - plugin-tok/s: the same tokens ÷ the plugin's own elapsed_ms (template,
//     prompt decode, generation; millisecond resolution).
//   - overhead-ms: job wall time minus the plugin's elapsed_ms, per job:
//     what the pipeline adds, whatever the model.
//   - llama-simple-tok/s: its "decoded N tokens … speed" line: its main
//     loop, prompt decode plus generation (and printing each piece), no
//     model load.
//   - llama-eval-tok/s: its generation compute alone (perf counter "eval").
//   - ratio: tok/s ÷ llama-simple-tok/s. Both sides count prompt decode plus
//     generation of the same tokens (checked); the pipeline adds its
//     transport, llama-simple its printing.
//   - tokens/job; p50-µs, p99-µs: the pipeline jobs' wall times.
func BenchmarkPipelineLlama(b *testing.B) {
	bin := llamaSimpleBin(b)
	threads := []int{llamaSimpleThreads}
	for _, n := range []int{runtime.NumCPU(), 1} {
		if n < threads[len(threads)-1] {
			threads = append(threads, n)
		}
	}
	for _, t := range threads {
		b.Run(fmt.Sprintf("threads=%d", t), func(b *testing.B) {
			if t < llamaSimpleThreads {
				requireOpenMP(b, bin)
			}
			s := startLlamaStack(b, t)
			model := s.models["tiny-llama"].Path // the bytes the agent downloads and verifies
			for _, n := range []int{128, 448} {
				b.Run(fmt.Sprintf("maxTokens=%d", n), func(b *testing.B) {
					benchLlamaJobs(b, s, bin, model, t, n)
				})
			}
		})
	}
}

func benchLlamaJobs(b *testing.B, s *engineStack, bin, model string, threads, n int) {
	task, err := json.Marshal(map[string]any{
		"kind":        "llm",
		"messages":    []map[string]string{{"role": "user", "content": "Hello there"}},
		"maxTokens":   n,
		"temperature": 0,
	})
	if err != nil {
		b.Fatal(err)
	}
	s.timedJob(b, "tiny-llama", task) // warm: model download, plugin start, model load
	var (
		tokens, simpleTokens, evalRuns       int
		wall, pluginTime, simpleLoop, simEva time.Duration
		workerTime                           time.Duration
		durs                                 = make([]time.Duration, 0, b.N)
	)
	for b.Loop() {
		v, d := s.timedJob(b, "tiny-llama", task)
		var res llmResult
		if err := json.Unmarshal(v.Result, &res); err != nil {
			b.Fatalf("result %s: %v", v.Result, err)
		}
		sr := runLlamaSimple(b, bin, model, threads, n, tinyLlamaPrompt)
		// The same work on both sides, or the rates compare nothing.
		if res.Usage.CompletionTokens != sr.decoded || res.Usage.PromptTokens != sr.promptTokens {
			b.Fatalf("pipeline: %d prompt + %d generated tokens; llama-simple: %d + %d",
				res.Usage.PromptTokens, res.Usage.CompletionTokens, sr.promptTokens, sr.decoded)
		}
		if len(res.Choices) != 1 || (res.Usage.CompletionTokens == n) != (res.Choices[0].FinishReason == "length") {
			b.Fatalf("result %s: want one choice, finish_reason length exactly when %d tokens came", v.Result, n)
		}
		durs = append(durs, d)
		wall += d
		workerTime += v.ReportedAt.Sub(v.OfferedAt)
		tokens += res.Usage.CompletionTokens
		pluginTime += time.Duration(res.ElapsedMs) * time.Millisecond
		simpleTokens += sr.decoded
		simpleLoop += sr.loop
		evalRuns += sr.evalRuns
		simEva += sr.eval
	}
	jobs := float64(len(durs))
	rate := float64(tokens) / wall.Seconds()
	simpleRate := float64(simpleTokens) / simpleLoop.Seconds()
	b.ReportMetric(rate, "tok/s")
	b.ReportMetric(float64(tokens)/pluginTime.Seconds(), "plugin-tok/s")
	// overhead-ms, the pipeline's time per job beside the plugin's own
	// elapsed_ms (rounded to the millisecond, so right on average over
	// many jobs), is the dev studio's share (submit to offer written,
	// outcome read to the waiter woken: studio-ms) and the worker's
	// (worker-ms − plugin time: the session, the runner, the host, the two
	// gRPC legs and what the plugin does before and after its chat()).
	b.ReportMetric((wall-pluginTime).Seconds()*1000/jobs, "overhead-ms")
	b.ReportMetric((wall-workerTime).Seconds()*1000/jobs, "studio-ms")
	b.ReportMetric((workerTime-pluginTime).Seconds()*1000/jobs, "worker-overhead-ms")
	b.ReportMetric(simpleRate, "llama-simple-tok/s")
	b.ReportMetric(float64(evalRuns)/simEva.Seconds(), "llama-eval-tok/s")
	b.ReportMetric(rate/simpleRate, "ratio")
	b.ReportMetric(float64(tokens)/jobs, "tokens/job")
	reportPercentiles(b, durs)
}

// whisperCLIBin finds whisper-cli built from the same whisper.cpp source
// as the plugin: $STOKER_WHISPER_CLI, else the cli variable of whisper.pc.
func whisperCLIBin(b *testing.B) string {
	b.Helper()
	if p := os.Getenv("STOKER_WHISPER_CLI"); p != "" {
		return p
	}
	out, err := exec.Command("pkg-config", "--variable=cli", "whisper").Output()
	p := strings.TrimSpace(string(out))
	if err != nil || p == "" {
		b.Fatalf("pkg-config --variable=cli whisper: %v (source scripts/engines/env.sh, or set STOKER_WHISPER_CLI)", err)
	}
	if _, err := os.Stat(p); err != nil {
		b.Fatalf("whisper-cli: %v", err)
	}
	return p
}

// whisper-cli's own timings (whisper_print_timings, on stderr): "load
// time" is the model load, "total time" everything from its context
// creation to the print.
var cliTimings = regexp.MustCompile(`(load|total) time =\s*([0-9.]+) ms`)

// cliSegmentLine is one transcript line whisper-cli prints on stdout.
var cliSegmentLine = regexp.MustCompile(`(?m)^\[\d\d:\d\d:\d\d\.\d{3} --> \d\d:\d\d:\d\d\.\d{3}\]`)

// speechLike is a deterministic, vaguely voiced signal: a gliding 120–160 Hz
// fundamental with six harmonics, chopped into syllables at 4 Hz with a
// pause every 2.5 s, over low noise; samples in [-1, 1].
func speechLike(seconds float64, rate int) []float64 {
	rng := rand.New(rand.NewPCG(5, 6))
	out := make([]float64, int(seconds*float64(rate)))
	var phase float64
	for i := range out {
		t := float64(i) / float64(rate)
		f0 := 140 + 20*math.Sin(2*math.Pi*0.45*t)
		phase += 2 * math.Pi * f0 / float64(rate)
		env := math.Max(0, math.Sin(2*math.Pi*4*t))
		if math.Mod(t, 2.5) > 2.0 {
			env = 0
		}
		var v float64
		for h := 1; h <= 6; h++ {
			v += math.Sin(float64(h)*phase) / float64(h)
		}
		out[i] = 0.3*env*v/2.5 + 0.004*rng.NormFloat64()
	}
	return out
}

// writeWAV16 writes samples (clipped to [-1, 1]) as a mono 16-bit PCM WAV
// at rate Hz.
func writeWAV16(path string, rate int, samples []float64) error {
	le := binary.LittleEndian
	w := make([]byte, 0, 44+2*len(samples))
	w = append(w, "RIFF"...)
	w = le.AppendUint32(w, uint32(36+2*len(samples)))
	w = append(w, "WAVEfmt "...)
	w = le.AppendUint32(w, 16) // fmt chunk size
	w = le.AppendUint16(w, 1)  // PCM
	w = le.AppendUint16(w, 1)  // mono
	w = le.AppendUint32(w, uint32(rate))
	w = le.AppendUint32(w, uint32(2*rate)) // bytes per second
	w = le.AppendUint16(w, 2)              // block align
	w = le.AppendUint16(w, 16)             // bits per sample
	w = append(w, "data"...)
	w = le.AppendUint32(w, uint32(2*len(samples)))
	for _, v := range samples {
		w = le.AppendUint16(w, uint16(int16(math.Round(32767*max(-1, min(1, v))))))
	}
	return os.WriteFile(path, w, 0o644)
}

// BenchmarkPipelineWhisper transcribes a 30 s clip (made here, 16 kHz mono
// 16-bit, served from the dev studio's FilesDir) with tiny-whisper through
// the whole pipeline and, in the same loop, with whisper-cli on the same
// file, model bytes, language and threads (min(4, CPUs): the plugin's
// default). Metrics:
//
//   - rtf: job wall time ÷ audio seconds, from Submit at the dev studio to
//     the completed job stored there (offer, accept, model check, the audio
//     fetched over loopback HTTP, WAV decode, whisper_full on a fresh state,
//     result). Lower is faster.
//   - cli-rtf: whisper-cli's own "total time" minus its "load time" (the
//     model load, which the resident plugin does not repeat) ÷ audio seconds.
//   - cli-wall-rtf: whisper-cli's whole process wall time ÷ audio seconds
//     (process start, model load, WAV read, everything).
//   - ratio: cli-rtf ÷ rtf (≥ 1: the pipeline is at least as fast).
//   - p50-µs, p99-µs: the pipeline jobs' wall times.
func BenchmarkPipelineWhisper(b *testing.B) {
	cli := whisperCLIBin(b)
	s := startLlamaStack(b, llamaSimpleThreads) // the llama plugin idles here
	model := s.models["tiny-whisper"].Path
	const seconds, rate = 30, 16000
	clip := filepath.Join(s.files, "bench-30s.wav")
	if err := writeWAV16(clip, rate, speechLike(seconds, rate)); err != nil {
		b.Fatal(err)
	}
	threads := min(4, runtime.NumCPU())
	b.Logf("threads %d (plugin default and whisper-cli -t), %d CPUs", threads, runtime.NumCPU())
	task, err := json.Marshal(map[string]any{"kind": "audio_stt", "inputUrl": s.studio.DevFileURL(filepath.Base(clip)), "language": "en"})
	if err != nil {
		b.Fatal(err)
	}
	s.timedJob(b, "tiny-whisper", task) // warm: model download, plugin start, model load
	var (
		wall, cliBusy, cliWall time.Duration
		durs                   = make([]time.Duration, 0, b.N)
	)
	for b.Loop() {
		v, d := s.timedJob(b, "tiny-whisper", task)
		var res struct {
			Duration float64 `json:"duration"`
			Segments int     `json:"segments"`
		}
		if err := json.Unmarshal(v.Result, &res); err != nil {
			b.Fatalf("result %s: %v", v.Result, err)
		}
		if res.Duration != seconds {
			b.Fatalf("result %s: duration %v, want %d", v.Result, res.Duration, seconds)
		}

		var stdout, stderr bytes.Buffer
		cmd := exec.Command(cli, "-m", model, "-f", clip, "-t", strconv.Itoa(threads), "-l", "en")
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		start := time.Now()
		if err := cmd.Run(); err != nil {
			b.Fatalf("whisper-cli: %v\n%s", err, stderr.String())
		}
		cliWall += time.Since(start)
		var load, total float64
		for _, m := range cliTimings.FindAllStringSubmatch(stderr.String(), -1) {
			ms, _ := strconv.ParseFloat(m[2], 64)
			if m[1] == "load" {
				load = ms
			} else {
				total = ms
			}
		}
		if total == 0 || load == 0 {
			b.Fatalf("no load/total timings in whisper-cli's output:\n%s", stderr.String())
		}
		cliBusy += time.Duration((total - load) * float64(time.Millisecond))
		// The same work on both sides: as many segments decoded.
		if got := len(cliSegmentLine.FindAllIndex(stdout.Bytes(), -1)); got != res.Segments {
			b.Fatalf("pipeline decoded %d segments (%s), whisper-cli %d:\n%s", res.Segments, v.Result, got, stdout.String())
		}
		durs = append(durs, d)
		wall += d
	}
	n := float64(b.N) * seconds
	rtf := wall.Seconds() / n
	cliRTF := cliBusy.Seconds() / n
	b.ReportMetric(rtf, "rtf")
	b.ReportMetric(cliRTF, "cli-rtf")
	b.ReportMetric(cliWall.Seconds()/n, "cli-wall-rtf")
	b.ReportMetric(cliRTF/rtf, "ratio")
	reportPercentiles(b, durs)
}
