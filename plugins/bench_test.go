package plugins_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/plugins/plugintest"
)

// BenchmarkPluginRoundTrip is one small job's round trip between the host
// and a launched plugin process (the test binary), with no studio and no
// runner: the transport's own cost per job, what the Jobs stream is for.
// This process, the host, runs on one processor as `stoker agent` does
// unless GOMAXPROCS is set (the plugin does by itself: plugins.Serve).
func BenchmarkPluginRoundTrip(b *testing.B) {
	if os.Getenv("GOMAXPROCS") == "" {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	}
	p := launch(b, nil)
	ctx := context.Background()
	req := llm("bench")
	if _, err := plugintest.Run(ctx, p, req); err != nil {
		b.Fatal(err)
	}
	durs := make([]time.Duration, 0, b.N)
	for b.Loop() {
		start := time.Now()
		if _, err := plugintest.Run(ctx, p, req); err != nil {
			b.Fatal(err)
		}
		durs = append(durs, time.Since(start))
	}
	slices.Sort(durs)
	b.ReportMetric(float64(durs[len(durs)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(durs[len(durs)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkPluginLaunch is one plugin process's start, as the supervisor
// makes it for a relaunch or a warm spare: Launch (checks, exec, go-plugin's
// handshake with its certificates, the Jobs stream opened) and the first
// Describe, then Kill; sha256 also pins the executable, hashed from the
// descriptor it runs from.
func BenchmarkPluginLaunch(b *testing.B) {
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	for _, pinned := range []bool{false, true} {
		b.Run(fmt.Sprintf("sha256=%t", pinned), func(b *testing.B) {
			cfg := plugins.LaunchConfig{Path: exe, Env: []string{envServe + "=1"}}
			if pinned {
				sum, err := fileSHA256(exe)
				if err != nil {
					b.Fatal(err)
				}
				cfg.SHA256 = sum
			}
			var launched, described []time.Duration
			for b.Loop() {
				start := time.Now()
				p, err := plugins.Launch(cfg)
				if err != nil {
					b.Fatal(err)
				}
				up := time.Now()
				if _, err := p.Describe(context.Background()); err != nil {
					b.Fatal(err)
				}
				launched, described = append(launched, up.Sub(start)), append(described, time.Since(up))
				p.Kill()
			}
			b.ReportMetric(p50ms(launched), "launch-p50-ms")
			b.ReportMetric(p50ms(described), "describe-p50-ms")
		})
	}
}

func p50ms(ds []time.Duration) float64 {
	slices.Sort(ds)
	return float64(ds[len(ds)/2].Microseconds()) / 1000
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
