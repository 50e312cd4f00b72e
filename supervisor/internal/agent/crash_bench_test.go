package agent_test

import (
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stokerhq/stoker/supervisor/internal/devstudio"
	"github.com/stokerhq/stoker/supervisor/internal/engines"
)

// crashAt is the faults plugin's own "injecting ... at=<ns>" line, carried
// in the fail message's stderr tail: the crash moment by the plugin's clock
// (the same machine clock as ours).
var crashAt = regexp.MustCompile(`faults: injecting \S+ pid=\d+ at=(\d+)`)

// BenchmarkCrashRecovery measures, per plugin crash (SIGKILL mid-job), the
// time from the crash to the studio receiving the job's fail, and from the
// crash to the relaunched plugin serving again. Each crash follows a job
// the plugin served, so the relaunch is immediate (no backoff).
func BenchmarkCrashRecovery(b *testing.B) {
	s := startCrashStack(b, crashOptions{})
	var fails, serves []time.Duration
	for i := 0; b.Loop(); i++ {
		if v := s.run(b, "faults-llm", "ok warm "+strconv.Itoa(i)); v.Status != devstudio.JobCompleted {
			b.Fatalf("warm-up job: %s %q", v.Status, v.Error)
		}
		restarts := s.faultsStatus(b).Restarts
		v := s.run(b, "faults-llm", "sigkill bench-"+strconv.Itoa(i))
		m := crashAt.FindStringSubmatch(v.Error)
		if v.Status != devstudio.JobFailed || m == nil {
			b.Fatalf("crash job: %s %q", v.Status, v.Error)
		}
		ns, _ := strconv.ParseInt(m[1], 10, 64)
		crash := time.Unix(0, ns)
		failAt, ok := s.frames.first(v.ID, devstudio.PointFail)
		if !ok {
			b.Fatalf("no fail frame recorded for %s", v.ID)
		}
		st := s.waitFaults(b, "relaunched", func(st engines.PluginStatus) bool {
			return st.State == engines.StateReady && st.Restarts > restarts
		})
		fails = append(fails, failAt.Sub(crash))
		serves = append(serves, st.Since.Sub(crash))
	}
	b.StopTimer()
	report := func(name string, ds []time.Duration) {
		slices.Sort(ds)
		b.ReportMetric(float64(ds[len(ds)/2].Microseconds())/1000, name+"-p50-ms")
		b.ReportMetric(float64(ds[(len(ds)-1)*99/100].Microseconds())/1000, name+"-p99-ms")
	}
	report("crash-to-fail", fails)
	report("crash-to-serving", serves)
}
