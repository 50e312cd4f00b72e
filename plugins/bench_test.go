package plugins_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/stokerhq/stoker/plugins/plugintest"
)

// BenchmarkPluginRoundTrip is one small job's round trip between the host
// and a launched plugin process (the test binary), with no studio and no
// runner: the transport's own cost per job, what the Jobs stream is for.
func BenchmarkPluginRoundTrip(b *testing.B) {
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
