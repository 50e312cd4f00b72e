//go:build onnx

package agent_test

// Pipeline speed of the onnx plugin: tiny-lama object-removal jobs on a
// 512×512 image and mask go from the dev studio to the agent (which
// fetches the inputs), to the resident onnx-plugin process (decode, pad,
// ONNX Runtime, PNG encode) and back to the studio's upload. Beside it,
// ONNX Runtime called directly through its own Node API (onnxruntime-node,
// the package the plugin's library comes from) on the same tensors, timing
// session.run alone.
//
//	scripts/install-engines.sh && source scripts/engines/env.sh
//	go test -tags onnx -run '^$' -bench PipelineLaMa -benchtime 20x ./supervisor/internal/agent/

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/stokerhq/stoker/onnx-plugin/lamamodel/ortnode"
)

// lamaStages sums the stage durations of the onnx plugin's "image filled"
// lines (nanoseconds, as go-plugin re-logs them from the plugin's JSON).
// It is an hclog sink: Accept must not block or log.
type lamaStages struct {
	mu                           sync.Mutex
	n                            int
	decode, prepare, run, encode time.Duration
}

func (l *lamaStages) Accept(_ string, _ hclog.Level, msg string, args ...any) {
	if msg != "image filled" {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n++
	for i := 0; i+1 < len(args); i += 2 {
		var d time.Duration
		switch v := args[i+1].(type) {
		case float64:
			d = time.Duration(v)
		case string:
			f, _ := strconv.ParseFloat(v, 64)
			d = time.Duration(f)
		}
		switch args[i] {
		case "decode":
			l.decode += d
		case "prepare": // the padded tensors
			l.prepare += d
		case "run":
			l.run += d
		case "encode":
			l.encode += d
		}
	}
}

func BenchmarkPipelineLaMa(b *testing.B) {
	const size = 512
	s := startEngineStack(b, engineOptions{plugins: []string{"onnx-plugin"}})
	img, hole := lamaInputs(b, s, "bench", size, size, true)
	task, err := json.Marshal(lamaTask(s, "bench", "png"))
	if err != nil {
		b.Fatal(err)
	}
	s.timedJob(b, "tiny-lama", task) // download and load the model

	// The tensors the plugin makes of the same files (512 is a multiple
	// of 8: no padding).
	plane := size * size
	image := make([]float32, 3*plane)
	mask := make([]float32, plane)
	for y := range size {
		for x := range size {
			c := img.NRGBAAt(x, y)
			i := y*size + x
			image[i], image[plane+i], image[2*plane+i] = float32(c.R)/255, float32(c.G)/255, float32(c.B)/255
			if (x >= hole.Min.X && x < hole.Max.X) && (y >= hole.Min.Y && y < hole.Max.Y) {
				mask[i] = 1
			}
		}
	}

	stages := &lamaStages{}
	s.log.RegisterSink(stages)
	b.ResetTimer()
	var pipeline time.Duration
	for range b.N {
		_, d := s.timedJob(b, "tiny-lama", task)
		pipeline += d
	}
	b.StopTimer()
	s.log.DeregisterSink(stages)
	direct, err := ortnode.Run(context.Background(), s.models["tiny-lama"].Path, size, size, image, mask, max(b.N, 5))
	if err != nil {
		b.Fatal(err)
	}
	perJob := pipeline / time.Duration(b.N)
	b.ReportMetric(float64(perJob.Microseconds())/1000, "pipeline-ms/job")
	b.ReportMetric(float64(direct.RunMean.Microseconds())/1000, "direct-ms/run")
	b.ReportMetric(float64(direct.RunMin.Microseconds())/1000, "direct-min-ms/run")
	stages.mu.Lock()
	if stages.n != b.N {
		b.Fatalf("%d image filled lines for %d jobs", stages.n, b.N)
	}
	for name, d := range map[string]time.Duration{"decode": stages.decode, "prepare": stages.prepare, "run": stages.run, "encode": stages.encode} {
		b.ReportMetric(float64((d/time.Duration(b.N)).Microseconds())/1000, "plugin-"+name+"-ms/job")
	}
	stages.mu.Unlock()
	b.ReportMetric(float64(perJob)/float64(direct.RunMean), "pipeline/direct")
	b.ReportMetric(float64(direct.RunMean)/float64(perJob), "direct/pipeline")
}
