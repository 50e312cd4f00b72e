// Package stresscrash is the crash-isolation stress run behind
// scripts/stress-crash.sh: it serves an in-process dev studio on loopback,
// runs the real `stoker agent` binary against it with the faults and
// synthetic plugins, submits N jobs of which a share inject faults, waits
// for every outcome and reports what the studio saw. Only its command
// (stress-crash) imports it.
//
// Outcomes are counted per attempt, from the frames the studio received:
// an attempt begins with an accept and must end in exactly one outcome
// (completeJson, fail, or a binary upload). An attempt with none is lost
// (as is a job that never reaches a final state); a second outcome for one
// attempt is a duplicate.
package stresscrash

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/stokerhq/stoker/supervisor/internal/childproc"
	"github.com/stokerhq/stoker/supervisor/internal/devstudio"
	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

// Config configures a run.
type Config struct {
	N         int     // jobs (default 500)
	FaultRate float64 // share of jobs that inject a fault (default 0.2)
	Seed      uint64  // job mix seed (default 1)
	// Stoker is the stoker executable; PluginDir holds faults-plugin and
	// synthetic-plugin.
	Stoker    string
	PluginDir string
	// WorkDir holds the agent's state and the results (default: a temp dir).
	WorkDir string
	// Timeout bounds the whole run (default 30m).
	Timeout time.Duration
	// AgentLog, if set, receives the agent's own log.
	AgentLog io.Writer
	// NoImages keeps every job a JSON (llm) job: no binary uploads.
	NoImages bool
}

// Faults are the injected faults, in the order the mix cycles through them.
var Faults = []string{"sigkill", "segv", "panic", "exit=3", "abort", "segv-raw", "hang", "alloc"}

// Report is what the run saw.
type Report struct {
	Jobs               int
	Injected           int
	Completed          int
	FailedRetryable    int // failed for good after MaxAttempts retryable failures or refusals
	FailedNonRetryable int
	// Poison counts the failed jobs that brought down two plugin
	// instances: each failed retryable (a bigger node may serve it) and
	// was then refused by this node, until the attempts ran out.
	Poison         int
	Attempts       int
	PluginRestarts int
	// Crash → fail received by the studio; crash → plugin serving again.
	FailLatency  []time.Duration
	ServeLatency []time.Duration
	// SpareServe and RelaunchServe split ServeLatency: serving again by a
	// warm spare swapped in, or by a process started after the crash
	// (no spare was ready: the agent runs without spares, or the crash
	// came before the spare that replaced the last one was up).
	SpareServe, RelaunchServe []time.Duration
	Lost                      int
	Duplicates                int
	// SupervisorCrashes counts unexpected exits of the stoker process.
	SupervisorCrashes int
	Elapsed           time.Duration
}

// Run performs the stress run. It returns an error only when the run could
// not be carried out; what went wrong in it is in the report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.N == 0 {
		cfg.N = 500
	}
	if cfg.FaultRate == 0 {
		cfg.FaultRate = 0.2
	}
	if cfg.Seed == 0 {
		cfg.Seed = 1
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Minute
	}
	if cfg.WorkDir == "" {
		dir, err := os.MkdirTemp("", "stress-crash-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		cfg.WorkDir = dir
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	frames := &Frames{}
	cat := devstudio.DefaultCatalog()
	for _, id := range []string{"faults-llm", "faults-image"} {
		if err := cat.Add(id, devstudio.CatalogEntry{Source: protocol.ModelSource{
			Engine: "faults", Files: []protocol.ModelFile{}, CliDefaults: &protocol.ModelCliDefaults{CfgScale: 1, Steps: 1, Width: 1, Height: 1},
		}}); err != nil {
			return nil, err
		}
	}
	srv, err := devstudio.New(devstudio.Config{
		Addr: "127.0.0.1:0", AutoApprove: true, Catalog: cat, MaxAttempts: 3,
		ResultsDir: filepath.Join(cfg.WorkDir, "results"), Logger: hclog.NewNullLogger(),
		Hooks: devstudio.Hooks{Drop: frames.Hook},
	})
	if err != nil {
		return nil, err
	}
	frames.Job = srv.Job
	if err := srv.Start(ctx); err != nil {
		return nil, err
	}
	defer srv.Close()
	workerID, token, err := srv.AddWorker("stress")
	if err != nil {
		return nil, err
	}

	agentLog := &AgentLog{}
	sup := &supervisor{cfg: cfg, env: []string{
		"STOKER_API_BASE_URL=" + srv.URL(),
		"STOKER_WORKER_ID=" + workerID,
		"STOKER_AUTH_TOKEN=" + token,
		"STOKER_STATE_DIR=" + filepath.Join(cfg.WorkDir, "agent"),
		"STOKER_LISTEN=",
		"STOKER_PLUGIN_DIR=" + cfg.PluginDir,
		"STOKER_LOG_JSON=true",
		"STOKER_LISTEN=",
		"STOKER_PLUGIN_CRASH_LIMIT=1000000",
		"STOKER_STALL_TIMEOUTS=faults=500ms",
		"STOKER_DRAIN_TIMEOUT=10s",
	}, log: agentLog}
	if err := sup.start(); err != nil {
		return nil, err
	}
	defer sup.stop()
	if _, err := srv.WaitConnected(ctx, workerID); err != nil {
		return nil, fmt.Errorf("the agent never connected: %w", err)
	}

	start := time.Now()
	rep := &Report{Jobs: cfg.N}
	ids := make([]string, 0, cfg.N)
	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
	for i := range cfg.N {
		model, task := jobFor(i, rng, cfg.FaultRate, !cfg.NoImages, &rep.Injected)
		raw, err := json.Marshal(task)
		if err != nil {
			return nil, err
		}
		id, err := srv.Submit(model, raw)
		if err != nil {
			return nil, fmt.Errorf("submit job %d: %w", i, err)
		}
		ids = append(ids, id)
	}
	views := make([]devstudio.JobView, 0, len(ids))
	for _, id := range ids {
		v, err := srv.WaitJob(ctx, id, func(v devstudio.JobView) bool { return v.Status.Done() })
		if err != nil {
			v, _ = srv.Job(id) // never finished: lost
		}
		views = append(views, v)
	}
	rep.Elapsed = time.Since(start)
	sup.stop()
	rep.SupervisorCrashes = sup.crashes()
	tally(rep, views, frames, agentLog)
	return rep, nil
}

// jobFor picks job i of the mix: a fault with probability rate, else a
// normal job on one of the plugins.
func jobFor(i int, rng *rand.Rand, rate float64, images bool, injected *int) (string, map[string]any) {
	llm := func(prompt string) map[string]any {
		return map[string]any{"kind": "llm", "messages": []map[string]string{{"role": "user", "content": prompt}}}
	}
	nonce := " job-" + strconv.Itoa(i)
	if rng.Float64() < rate {
		*injected++
		return "faults-llm", llm(Faults[*injected%len(Faults)] + nonce)
	}
	switch r := rng.Float64(); {
	case !images && r < 0.5, r < 0.4:
		return "synthetic-llm", llm("hello" + nonce)
	case !images, r < 0.7:
		return "faults-llm", llm("ok" + nonce)
	case r < 0.85:
		return "faults-image", map[string]any{"kind": "image", "prompt": "ok" + nonce, "width": 64, "height": 64}
	default:
		return "synthetic-image", map[string]any{"kind": "image", "prompt": "a red square" + nonce, "width": 64, "height": 64, "steps": 1}
	}
}

// crashAt finds the plugin's own "faults: injecting ... at=<ns>" line in a
// fail message.
var crashAt = regexp.MustCompile(`faults: injecting \S+ pid=\d+ at=(\d+)`)

// tally fills the report from the final job views, the frames and the
// agent's log.
func tally(rep *Report, views []devstudio.JobView, frames *Frames, log *AgentLog) {
	for _, v := range views {
		switch {
		case v.Status == devstudio.JobCompleted:
			rep.Completed++
		case v.Status == devstudio.JobFailed && strings.Contains(v.Error, "brought down 2"):
			rep.Poison++
			rep.FailedRetryable++
		case v.Status == devstudio.JobFailed && v.Retryable:
			rep.FailedRetryable++
		case v.Status == devstudio.JobFailed:
			rep.FailedNonRetryable++
		default:
			rep.Lost++ // never reached a final state
		}
	}
	frames.Finish(views)
	attempts, lost, dups := frames.Attempts()
	rep.Attempts, rep.Lost, rep.Duplicates = attempts, rep.Lost+lost, dups
	serving := log.Serving("faults-plugin")
	bySpare := log.SpareServing("faults-plugin")
	rep.PluginRestarts = log.Died()
	for _, f := range frames.Fails() {
		m := crashAt.FindStringSubmatch(f.Message)
		if m == nil {
			continue // a stall or a job-level failure: no crash moment
		}
		ns, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil {
			continue
		}
		crash := time.Unix(0, ns)
		rep.FailLatency = append(rep.FailLatency, f.At.Sub(crash))
		if i, ok := slices.BinarySearchFunc(serving, crash, func(a, b time.Time) int { return a.Compare(b) }); ok || i < len(serving) {
			d := serving[i].Sub(crash)
			rep.ServeLatency = append(rep.ServeLatency, d)
			if bySpare[serving[i]] {
				rep.SpareServe = append(rep.SpareServe, d)
			} else {
				rep.RelaunchServe = append(rep.RelaunchServe, d)
			}
		}
	}
}

// Percentile returns the p-th percentile (0-100) of ds, or 0 for none.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}

// Print writes the table and, as the last line, the verdict line.
func (r *Report) Print(w io.Writer) {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
	rows := [][2]string{
		{"jobs", strconv.Itoa(r.Jobs)},
		{"injected faults", fmt.Sprintf("%d (%.0f%%)", r.Injected, 100*float64(r.Injected)/float64(max(r.Jobs, 1)))},
		{"completed", strconv.Itoa(r.Completed)},
		{"failed retryable", strconv.Itoa(r.FailedRetryable)},
		{"  of which poison, refused", strconv.Itoa(r.Poison)},
		{"failed non-retryable", strconv.Itoa(r.FailedNonRetryable)},
		{"attempts", strconv.Itoa(r.Attempts)},
		{"plugin restarts", strconv.Itoa(r.PluginRestarts)},
		{"crash -> fail received p50", ms(Percentile(r.FailLatency, 50))},
		{"crash -> fail received p99", ms(Percentile(r.FailLatency, 99))},
		{"crash -> serving again p50", ms(Percentile(r.ServeLatency, 50))},
		{"crash -> serving again p99", ms(Percentile(r.ServeLatency, 99))},
		{"  by a spare p50, p99", fmt.Sprintf("%s, %s (%d)", ms(Percentile(r.SpareServe, 50)), ms(Percentile(r.SpareServe, 99)), len(r.SpareServe))},
		{"  by a relaunch p50, p99", fmt.Sprintf("%s, %s (%d)", ms(Percentile(r.RelaunchServe, 50)), ms(Percentile(r.RelaunchServe, 99)), len(r.RelaunchServe))},
		{"crashes measured", fmt.Sprintf("%d fail, %d serve", len(r.FailLatency), len(r.ServeLatency))},
		{"elapsed", r.Elapsed.Round(time.Millisecond).String()},
	}
	for _, row := range rows {
		fmt.Fprintf(w, "%-28s %s\n", row[0], row[1])
	}
	fmt.Fprintf(w, "lost=%d duplicates=%d supervisor_crashes=%d jobs=%d\n", r.Lost, r.Duplicates, r.SupervisorCrashes, r.Jobs)
}

// supervisor runs the stoker agent process and restarts it if it dies
// (counting each unexpected exit).
type supervisor struct {
	cfg Config
	env []string
	log *AgentLog

	mu       sync.Mutex // guards all below
	p        *childproc.Proc
	stopping bool
	deaths   int
}

// start starts the agent, unless stop was called: a death that races
// with stop starts nothing.
func (s *supervisor) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return nil
	}
	cmd := exec.Command(s.cfg.Stoker, "agent")
	cmd.Env = append(os.Environ(), s.env...)
	p, err := childproc.Start(cmd, func(line []byte) {
		if s.cfg.AgentLog != nil {
			_, _ = s.cfg.AgentLog.Write(append(line, '\n'))
		}
		s.log.Line(line)
	}, func(error) {
		s.mu.Lock()
		restart := !s.stopping
		if restart {
			s.deaths++
		}
		s.mu.Unlock()
		if restart {
			_ = s.start()
		}
	})
	if err != nil {
		return err
	}
	s.p = p
	return nil
}

// stop sends SIGINT (a drain) and waits for the process; it may be
// called more than once.
func (s *supervisor) stop() {
	s.mu.Lock()
	s.stopping = true
	p := s.p
	s.mu.Unlock()
	if p != nil {
		_ = p.Stop(os.Interrupt, 30*time.Second)
	}
}

func (s *supervisor) crashes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deaths
}

// AgentLog keeps what the stress run needs from the agent's JSON log: when
// each plugin started serving, and how many plugin deaths it logged.
type AgentLog struct {
	mu      sync.Mutex // guards all below
	serving map[string][]time.Time
	// bySpare holds the serving moments that followed a "spare swapped
	// in" line of the same plugin; swapped is that plugin's pending line.
	bySpare map[string]map[time.Time]bool
	swapped map[string]bool
	died    int
}

// Line takes one JSON log line of the agent.
func (l *AgentLog) Line(line []byte) {
	var e struct {
		Msg    string `json:"@message"`
		Time   string `json:"@timestamp"`
		Plugin string `json:"plugin"`
	}
	if json.Unmarshal(line, &e) != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch e.Msg {
	case "plugin serving":
		t, err := time.Parse(time.RFC3339Nano, e.Time)
		if err != nil {
			return
		}
		if l.serving == nil {
			l.serving = map[string][]time.Time{}
			l.bySpare = map[string]map[time.Time]bool{}
		}
		l.serving[e.Plugin] = append(l.serving[e.Plugin], t)
		if l.swapped[e.Plugin] {
			if l.bySpare[e.Plugin] == nil {
				l.bySpare[e.Plugin] = map[time.Time]bool{}
			}
			l.bySpare[e.Plugin][t] = true
			delete(l.swapped, e.Plugin)
		}
	case "spare swapped in":
		if l.swapped == nil {
			l.swapped = map[string]bool{}
		}
		l.swapped[e.Plugin] = true
	case "plugin died":
		l.died++
	}
}

// Serving returns when plugin started serving, sorted.
func (l *AgentLog) Serving(plugin string) []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := slices.Clone(l.serving[plugin])
	slices.SortFunc(s, func(a, b time.Time) int { return a.Compare(b) })
	return s
}

// SpareServing returns the moments plugin started serving with a warm
// spare swapped in.
func (l *AgentLog) SpareServing(plugin string) map[time.Time]bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.bySpare[plugin])
}

// Died is the number of plugin deaths logged.
func (l *AgentLog) Died() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.died
}
