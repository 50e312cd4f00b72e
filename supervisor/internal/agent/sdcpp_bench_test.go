//go:build sdcpp

package agent_test

// Pipeline speed of stable-diffusion.cpp: tiny-sd image jobs go from the
// dev studio over the WebSocket session to the agent, which checks the
// model (downloaded and verified once) and runs them on the real, resident
// sdcpp-plugin process, which streams the WebP back to the agent and on to
// the studio's upload. Beside it, in the same loop, the reference worker's
// way: sd-cli started per job, loading the model each time.
//
//	scripts/install-engines.sh && source scripts/engines/env.sh
//	go test -tags sdcpp -run '^$' -bench PipelineSD -benchtime 20x ./supervisor/internal/agent/

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// sdCLIBin finds sd-cli built from the same stable-diffusion.cpp source as
// the plugin: $STOKER_SD_CLI, else the cli variable of
// stable-diffusion.pc.
func sdCLIBin(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("STOKER_SD_CLI"); p != "" {
		return p
	}
	out, err := exec.Command("pkg-config", "--variable=cli", "stable-diffusion").Output()
	p := strings.TrimSpace(string(out))
	if err != nil || p == "" {
		tb.Fatalf("pkg-config --variable=cli stable-diffusion: %v (source scripts/engines/env.sh, or set STOKER_SD_CLI)", err)
	}
	if _, err := os.Stat(p); err != nil {
		tb.Fatalf("sd-cli: %v", err)
	}
	return p
}

// sdJobLog picks out of the stack's log the lines that time each image
// job: the agent's "job started" and "binary result delivered", and the
// plugin's "image generated" (its load, sample, decode and encode
// durations, stamped by the plugin's clock just before it sends the
// image). Jobs run one at a time, so the n-th line of each kind belongs to
// the n-th job. It is an hclog sink: Accept is called under the logger's
// lock and must not block or log.
type sdJobLog struct {
	mu        sync.Mutex // guards the slices
	started   []time.Time
	generated []sdGenerated
	delivered []time.Time
	changed   chan struct{} // one slot: poked whenever a line was kept
}

// sdGenerated is one "image generated" line.
type sdGenerated struct {
	at                           time.Time // the plugin's timestamp
	load, sample, decode, encode time.Duration
	// engineSampling is the engine's own "sampling completed" figure
	// (10 ms resolution), part of sample; not every build logs it.
	engineSampling    time.Duration
	hasEngineSampling bool
	err               error // a field that could not be read
}

func newSDJobLog() *sdJobLog { return &sdJobLog{changed: make(chan struct{}, 1)} }

func (l *sdJobLog) Accept(_ string, _ hclog.Level, msg string, args ...any) {
	now := time.Now()
	l.mu.Lock()
	switch msg {
	case "job started":
		l.started = append(l.started, now)
	case "binary result delivered":
		l.delivered = append(l.delivered, now)
	case "image generated":
		l.generated = append(l.generated, parseGenerated(args))
	default:
		l.mu.Unlock()
		return
	}
	l.mu.Unlock()
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

// parseGenerated reads the plugin's fields as they reach the host: go-plugin
// re-logs a plugin's JSON line with its values decoded from JSON (a
// duration is a number of nanoseconds) and the line's own time as
// "timestamp".
func parseGenerated(args []any) sdGenerated {
	kv := map[string]any{}
	for i := 0; i+1 < len(args); i += 2 {
		if k, ok := args[i].(string); ok {
			kv[k] = args[i+1]
		}
	}
	var g sdGenerated
	var errs []error
	duration := func(k string, d *time.Duration) {
		switch v := kv[k].(type) {
		case float64:
			*d = time.Duration(v)
		case string:
			var err error
			if *d, err = time.ParseDuration(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", k, v, err))
			}
		default:
			errs = append(errs, fmt.Errorf("%s=%v (%T), want a duration", k, v, v))
		}
	}
	duration("load", &g.load)
	duration("sample", &g.sample)
	duration("decode", &g.decode)
	duration("encode", &g.encode)
	if _, ok := kv["engine_sampling"]; ok {
		g.hasEngineSampling = true
		duration("engine_sampling", &g.engineSampling)
	}
	ts, _ := kv["timestamp"].(string)
	var err error
	if g.at, err = time.Parse(hclog.TimeFormat, ts); err != nil {
		errs = append(errs, fmt.Errorf("timestamp %q: %w", ts, err))
	}
	g.err = errors.Join(errs...)
	return g
}

// sdJobTimes is one job's lines.
type sdJobTimes struct {
	started   time.Time
	generated sdGenerated
	delivered time.Time
}

// job waits until the lines of job i (counting from 0 since the sink was
// registered) are in, and returns them.
func (l *sdJobLog) job(tb testing.TB, i int) sdJobTimes {
	tb.Helper()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		if len(l.started) > i && len(l.generated) > i && len(l.delivered) > i {
			t := sdJobTimes{l.started[i], l.generated[i], l.delivered[i]}
			l.mu.Unlock()
			if t.generated.err != nil {
				tb.Fatalf("job %d: image generated: %v", i, t.generated.err)
			}
			return t
		}
		n := [3]int{len(l.started), len(l.generated), len(l.delivered)}
		l.mu.Unlock()
		select {
		case <-l.changed:
		case <-deadline.C:
			tb.Fatalf("job %d: log has %d job started, %d image generated, %d binary result delivered lines", i, n[0], n[1], n[2])
		}
	}
}

// sd-cli's own timings (stable-diffusion.cpp's log, on stdout/stderr).
var (
	cliCondition = regexp.MustCompile(`get_learned_condition completed, taking ([0-9.]+)s`)
	cliSampling  = regexp.MustCompile(`sampling completed, taking ([0-9.]+)s`)
	cliDecode    = regexp.MustCompile(`decode_first_stage completed, taking ([0-9.]+)s`)
	cliGenerate  = regexp.MustCompile(`generate_image completed in ([0-9.]+)s`)
)

// cliSeconds returns the duration re's one group gives in out.
func cliSeconds(tb testing.TB, re *regexp.Regexp, out []byte) time.Duration {
	tb.Helper()
	m := re.FindSubmatch(out)
	if m == nil {
		tb.Fatalf("sd-cli printed no %q:\n%s", re, out)
	}
	s, _ := strconv.ParseFloat(string(m[1]), 64)
	return time.Duration(s * float64(time.Second))
}

// webpBitstream returns the image chunk ("VP8 " or "VP8L") of a WebP file.
// sd-cli wraps it in an extended file (VP8X) with its parameters as
// metadata; the plugin sends the plain file.
func webpBitstream(tb testing.TB, b []byte) []byte {
	tb.Helper()
	if len(b) < 12 || string(b[:4]) != "RIFF" || string(b[8:12]) != "WEBP" {
		tb.Fatalf("not a WebP file (%d bytes)", len(b))
	}
	for p := b[12:]; len(p) >= 8; {
		id, n := string(p[:4]), int(binary.LittleEndian.Uint32(p[4:8]))
		if n > len(p)-8 {
			break
		}
		if id == "VP8 " || id == "VP8L" {
			return p[8 : 8+n]
		}
		p = p[min(len(p), 8+n+n%2):] // chunks are padded to even sizes
	}
	tb.Fatalf("WebP file (%d bytes) without an image chunk", len(b))
	return nil
}

// BenchmarkPipelineSD makes tiny-sd's 64×64, 2-step image through the
// whole pipeline and, in the same loop, with sd-cli on the same model
// bytes, prompt, seed, size, steps, CFG scale and sampler (and
// --diffusion-fa, which the plugin always sets), with the same thread count
// (both default to the physical cores). The two images must be the same
// WebP bitstream (the plugin encodes as sd-cli does; sd-cli adds metadata
// around it), so both did the same work. Metrics, per job:
//
//   - ms/job: wall time from Submit at the dev studio to the completed job
//     stored there.
//   - load-ms, sample-ms, decode-ms, encode-ms: the plugin's own split
//     ("image generated"): making the model resident (after the warm-up
//     job it is, so this is the lookup), text conditioning and sampling,
//     the VAE decode, the WebP encode.
//   - engine-sampling-ms: the sampling alone, as stable-diffusion.cpp
//     logs it inside the plugin (10 ms resolution; part of sample-ms),
//     when the plugin reports it.
//   - upload-ms: from the plugin's "image generated" (its clock, ms
//     resolution) to the agent's "binary result delivered": the image
//     streamed over gRPC, spooled, and uploaded to the studio over HTTP.
//   - dispatch-ms: from Submit to the agent's "job started" (offer,
//     accept).
//   - other-ms: the rest of ms/job (model check, the plugin call, the
//     studio's record of the upload).
//   - sd-cli-ms: sd-cli's process wall time (start, model load, conditioning,
//     sampling, decode, WebP written).
//   - sd-cli-condition-ms, sd-cli-sampling-ms, sd-cli-decode-ms,
//     sd-cli-generate-ms: its own "get_learned_condition", "sampling",
//     "decode_first_stage" and "generate_image" timings (10 ms resolution;
//     it reads each part's weights when the part is first used, so its
//     model load falls partly inside these).
//   - ratio: sd-cli-ms ÷ ms/job (above 1: the pipeline is faster).
//   - p50-µs, p99-µs: the pipeline jobs' wall times.
func BenchmarkPipelineSD(b *testing.B) {
	cli := sdCLIBin(b)
	s := startEngineStack(b, engineOptions{plugins: []string{"sdcpp-plugin"}})
	log := newSDJobLog()
	s.log.RegisterSink(log)
	b.Cleanup(func() { s.log.DeregisterSink(log) })
	model := s.models["tiny-sd"]
	d := model.CliDefaults
	const prompt, seed = "a red fox in the snow", 42
	task := tinySDTask(b, prompt, seed)
	out := filepath.Join(b.TempDir(), "sd-cli.webp")
	args := []string{"-m", model.Path, "-p", prompt, "-W", "64", "-H", "64", "--steps", "2",
		"--cfg-scale", strconv.FormatFloat(float64(d.CfgScale), 'g', -1, 32), "--sampling-method", d.SamplingMethod,
		"-s", strconv.Itoa(seed), "--diffusion-fa", "-o", out}

	s.timedJob(b, "tiny-sd", task) // warm: model download, plugin start, model load
	log.job(b, 0)
	var (
		wall, dispatch, load, sample, decode, encode, upload time.Duration
		engineSampling                                       time.Duration
		engineSamplingJobs                                   int
		cliWall, cliCond, cliSample, cliDecodeT, cliGen      time.Duration
		durs                                                 = make([]time.Duration, 0, b.N)
	)
	for b.Loop() {
		submitted := time.Now()
		v, dur := s.timedJob(b, "tiny-sd", task)
		t := log.job(b, len(durs)+1)
		got := s.result(b, v)

		cmd := exec.Command(cli, args...)
		start := time.Now()
		cliOut, err := cmd.CombinedOutput()
		cliWall += time.Since(start)
		if err != nil {
			b.Fatalf("sd-cli: %v\n%s", err, cliOut)
		}
		want, err := os.ReadFile(out)
		if err != nil {
			b.Fatal(err)
		}
		if g, w := webpBitstream(b, got), webpBitstream(b, want); !bytes.Equal(g, w) {
			b.Fatalf("the pipeline's image (%d bytes of bitstream) is not sd-cli's (%d bytes): not the same work", len(g), len(w))
		}
		cliCond += cliSeconds(b, cliCondition, cliOut)
		cliSample += cliSeconds(b, cliSampling, cliOut)
		cliDecodeT += cliSeconds(b, cliDecode, cliOut)
		cliGen += cliSeconds(b, cliGenerate, cliOut)

		durs = append(durs, dur)
		wall += dur
		dispatch += t.started.Sub(submitted)
		g := t.generated
		load += g.load
		sample += g.sample
		decode += g.decode
		encode += g.encode
		if g.hasEngineSampling {
			engineSampling += g.engineSampling
			engineSamplingJobs++
		}
		upload += t.delivered.Sub(g.at)
	}
	ms := func(d time.Duration) float64 { return d.Seconds() * 1000 / float64(len(durs)) }
	b.ReportMetric(ms(wall), "ms/job")
	b.ReportMetric(ms(load), "load-ms")
	b.ReportMetric(ms(sample), "sample-ms")
	if engineSamplingJobs == len(durs) {
		b.ReportMetric(ms(engineSampling), "engine-sampling-ms")
	}
	b.ReportMetric(ms(decode), "decode-ms")
	b.ReportMetric(ms(encode), "encode-ms")
	b.ReportMetric(ms(upload), "upload-ms")
	b.ReportMetric(ms(dispatch), "dispatch-ms")
	b.ReportMetric(ms(wall-dispatch-load-sample-decode-encode-upload), "other-ms")
	b.ReportMetric(ms(cliWall), "sd-cli-ms")
	b.ReportMetric(ms(cliCond), "sd-cli-condition-ms")
	b.ReportMetric(ms(cliSample), "sd-cli-sampling-ms")
	b.ReportMetric(ms(cliDecodeT), "sd-cli-decode-ms")
	b.ReportMetric(ms(cliGen), "sd-cli-generate-ms")
	b.ReportMetric(cliWall.Seconds()/wall.Seconds(), "ratio")
	reportPercentiles(b, durs)
}
