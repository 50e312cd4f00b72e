//go:build sdcpp

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stokerhq/stoker/plugins/plugintest"
)

// BenchmarkSamplingVsSDCLI compares the sampling time of one job through
// the launched plugin process (model resident) with sd-cli's on the same
// job: same model, prompt, seed, steps, sampler, size and threads. Both
// times are the engine's own measurement ("sampling completed, taking
// X s"), so the figure is what the plugin costs the engine while it
// samples. It reports each side's seconds per job, speed_ratio (sd-cli's
// time ÷ the plugin's; ≥ 1 is as fast as sd-cli), speed_ratio_excl_read
// (the same without the weights sd-cli reads inside its sampling, see
// below), and the plugin process's peak resident memory.
//
//	go test -tags sdcpp -run '^$' -bench SamplingVsSDCLI -benchtime 5x ./sdcpp-plugin/
//
// STOKER_SDCPP_BENCH_SIZE (default 256) and STOKER_SDCPP_BENCH_STEPS
// (default 20) shape the job; STOKER_SDCPP_BENCH_THREADS sets both sides'
// threads (default: the engine's, the physical cores). sd-cli runs as the reference worker runs it,
// loading lazily: its sampling time includes reading the UNet's weights
// (21 MB for tiny-sd), which the plugin read when it loaded the model.
func BenchmarkSamplingVsSDCLI(b *testing.B) {
	size := benchEnv("STOKER_SDCPP_BENCH_SIZE", 256)
	steps := benchEnv("STOKER_SDCPP_BENCH_STEPS", 20)
	req := tinyRequest(b, "a lighthouse on a cliff at dusk", 42, "webp")
	req.Task.Image.Width, req.Task.Image.Height, req.Task.Image.Steps = uint32(size), uint32(size), uint32(steps)
	req.Task.Image.SamplingMethod = "euler"
	args := cliArgs(b, req)
	var env []string
	if threads := benchEnv("STOKER_SDCPP_BENCH_THREADS", 0); threads > 0 {
		args = append(args, "--threads", strconv.Itoa(threads))
		env = append(env, envThreads+"="+strconv.Itoa(threads))
	}
	out := filepath.Join(b.TempDir(), "cli.webp")

	p := plugintest.Launch(b, builtPlugin(b), env...)
	run := func() time.Duration {
		rec, err := plugintest.Run(context.Background(), p, req)
		if err != nil {
			b.Fatal(err)
		}
		d, ok := engineSampling(strings.Join(rec.Logs(), "\n"), `sampling (\d+(?:\.\d+)?s)\)`)
		if !ok {
			b.Fatalf("no sampling time in the job's log: %q", rec.Logs())
		}
		return d
	}
	run() // load the model

	var plugin, cli, cliRead time.Duration
	b.ResetTimer()
	for range b.N {
		plugin += run()
		cmd := exec.Command(sdCLI(b), append(args, "-o", out)...)
		logs, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("sd-cli: %v\n%s", err, lastLines(string(logs), 10))
		}
		d, ok := engineSampling(string(logs), `sampling completed, taking (\d+(?:\.\d+)?s)`)
		if !ok {
			b.Fatalf("no sampling time in sd-cli's log")
		}
		cli += d
		cliRead += lazyRead(string(logs))
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(plugin.Seconds()/n, "plugin_sampling_s")
	b.ReportMetric(cli.Seconds()/n, "sdcli_sampling_s")
	b.ReportMetric(cli.Seconds()/plugin.Seconds(), "speed_ratio")
	b.ReportMetric((cli-cliRead).Seconds()/plugin.Seconds(), "speed_ratio_excl_read")
	if hwm, err := peakRSS(p.Pid()); err == nil {
		b.ReportMetric(float64(hwm)/(1<<20), "plugin_peak_MiB")
	}
}

// lazyRead is the time sd-cli spent reading weights inside its sampling:
// the "loading tensors completed, taking X s" lines between the start of
// the image ("generating image") and "sampling completed".
func lazyRead(log string) time.Duration {
	start := strings.Index(log, "generating image:")
	end := strings.Index(log, "sampling completed")
	if start < 0 || end < start {
		return 0
	}
	var d time.Duration
	re := regexp.MustCompile(`loading tensors completed, taking (\d+(?:\.\d+)?s)`)
	for _, m := range re.FindAllStringSubmatch(log[start:end], -1) {
		if v, err := time.ParseDuration(m[1]); err == nil {
			d += v
		}
	}
	return d
}

// engineSampling finds the sampling time pattern captures in log.
func engineSampling(log, pattern string) (time.Duration, bool) {
	m := regexp.MustCompile(pattern).FindStringSubmatch(log)
	if m == nil {
		return 0, false
	}
	d, err := time.ParseDuration(m[1])
	return d, err == nil
}

// peakRSS is a process's peak resident set (VmHWM) in bytes.
func peakRSS(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, err := strconv.ParseUint(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmHWM for pid %d", pid)
}

func benchEnv(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
