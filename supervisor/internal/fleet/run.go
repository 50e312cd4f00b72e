package fleet

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/procfs"

	"github.com/stokerhq/stoker/supervisor/internal/childproc"
	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

// RunConfig configures a measured run: a fleet, a batch of jobs, and what
// each node costs.
type RunConfig struct {
	Config
	// Jobs is how many jobs to submit (default 1000): three in four
	// synthetic-llm (a JSON result), one in four synthetic-image (a binary
	// upload).
	Jobs int
	// Idle is how long the idle fleet is watched after the jobs, for the
	// CPU that heartbeats and an open session cost the studio and the
	// agents (default 10s; below 1s, not measured).
	Idle time.Duration
}

// Report is what a run measured.
type Report struct {
	Agents, Jobs int
	Completed    int
	Failed       int
	// Lost counts jobs that never reached a final state, and accepted
	// attempts that never got an outcome; Duplicates counts outcomes for a
	// job its worker no longer held, and outcomes beyond the accepts.
	Lost, Duplicates int
	// Elapsed is from the first submission to the last job done.
	Elapsed time.Duration
	// RSS per agent, in bytes, after the jobs: the agent process alone,
	// and the agent with every process under it (plugins, warm spares).
	AgentRSS, NodeRSS []int64
	StudioRSS         int64
	// JobsPerAgent is each agent's completed count (stoker_jobs_total).
	JobsPerAgent []int
	// Series is the sample lines of each agent's /metrics (every series a
	// scrape of that node stores; it grows with the job histograms a node
	// has filled), and ScrapeBytes the size of each scrape.
	Series, ScrapeBytes []int
	// LoadAvg is /proc/loadavg when the jobs were done.
	LoadAvg string
	// HeartbeatBytes is one agent's heartbeat frame as sent (its
	// capabilities in it).
	HeartbeatBytes int
	// Idle is the idle window; StudioIdleCPU and AgentIdleCPU the CPU time
	// the studio, and all agents with their processes, used in it, in cores
	// (CPU seconds per second).
	Idle                        time.Duration
	StudioIdleCPU, AgentIdleCPU float64
}

// Run starts a fleet, submits the jobs, waits for them, measures, stops
// the fleet and reports. It returns an error only when the run could not be
// carried out; what went wrong in it is in the report.
func Run(ctx context.Context, cfg RunConfig) (*Report, error) {
	if cfg.Jobs <= 0 {
		cfg.Jobs = 1000
	}
	if cfg.Idle == 0 {
		cfg.Idle = 10 * time.Second
	}
	f, err := Start(ctx, cfg.Config)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rep := &Report{Agents: len(f.Agents), Jobs: cfg.Jobs}

	start := time.Now()
	ids := make([]string, 0, cfg.Jobs)
	for i := range cfg.Jobs {
		model, task := jobFor(i)
		id, err := f.Submit(ctx, model, task)
		if err != nil {
			return nil, fmt.Errorf("submit job %d: %w", i, err)
		}
		ids = append(ids, id)
	}
	jobs, waitErr := f.WaitJobs(ctx, ids)
	rep.Elapsed = time.Since(start)
	rep.LoadAvg = loadAvg()
	for _, j := range jobs {
		switch {
		case j.Status == "completed":
			rep.Completed++
		case j.Status == "failed":
			rep.Failed++
		}
	}
	rep.Lost = cfg.Jobs - rep.Completed - rep.Failed
	st, err := f.Stats(ctx)
	if err != nil {
		return nil, err
	}
	rep.Lost += max(0, st.Accepts-st.Outcomes)
	rep.Duplicates = st.Stray + max(0, st.Outcomes-st.Accepts)

	for _, a := range f.Agents {
		agent, node, err := a.RSS()
		if err != nil {
			return nil, err
		}
		rep.AgentRSS, rep.NodeRSS = append(rep.AgentRSS, agent), append(rep.NodeRSS, node)
		n, err := a.CompletedJobs(ctx, f.client)
		if err != nil {
			return nil, err
		}
		rep.JobsPerAgent = append(rep.JobsPerAgent, n)
		series, size, err := a.Series(ctx, f.client)
		if err != nil {
			return nil, err
		}
		rep.Series, rep.ScrapeBytes = append(rep.Series, series), append(rep.ScrapeBytes, size)
	}
	rep.StudioRSS, _ = childproc.RSS(f.StudioPid())
	if rep.HeartbeatBytes, err = f.heartbeatBytes(ctx); err != nil {
		return nil, err
	}
	if waitErr != nil {
		fmt.Fprintln(os.Stderr, "fleet:", waitErr) // the report says what was lost
	} else if cfg.Idle >= time.Second {
		if err := f.measureIdle(ctx, cfg.Idle, rep); err != nil {
			return nil, err
		}
	}
	if err := f.Close(); err != nil {
		return rep, err
	}
	return rep, nil
}

// jobFor is job i of the mix.
func jobFor(i int) (string, map[string]any) {
	nonce := " job-" + strconv.Itoa(i)
	if i%4 == 3 {
		return "synthetic-image", map[string]any{"kind": "image", "prompt": "a red square" + nonce, "width": 64, "height": 64, "steps": 1}
	}
	return "synthetic-llm", map[string]any{"kind": "llm", "messages": []map[string]string{{"role": "user", "content": "hello" + nonce}}}
}

// RSS returns the resident memory of the agent process, and of the agent
// with every process under it (its plugins, warm spares included).
func (a *Agent) RSS() (agent, node int64, err error) {
	agent, err = childproc.RSS(a.Pid())
	if err != nil {
		return 0, 0, err
	}
	node = agent
	for _, p := range descendants(a.Pid()) {
		if n, err := childproc.RSS(p); err == nil { // one that just exited counts nothing
			node += n
		}
	}
	return agent, node, nil
}

// descendants returns the processes under pid (children, theirs, ...),
// from /proc.
func descendants(pid int) []int {
	procs, err := procfs.AllProcs()
	if err != nil {
		return nil
	}
	children := map[int][]int{}
	for _, p := range procs {
		if st, err := p.Stat(); err == nil {
			children[st.PPID] = append(children[st.PPID], p.PID)
		}
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		c := children[queue[0]]
		queue = append(queue[1:], c...)
		out = append(out, c...)
	}
	return out
}

// CompletedJobs is the agent's own count of completed jobs.
func (a *Agent) CompletedJobs(ctx context.Context, c *http.Client) (int, error) {
	var st struct {
		Counters struct {
			Jobs struct {
				Completed int `json:"completed"`
			} `json:"jobs"`
		} `json:"counters"`
	}
	err := getJSON(ctx, c, a.API+"v1/status", &st)
	return st.Counters.Jobs.Completed, err
}

// Series scrapes the agent's /metrics and counts its sample lines and
// bytes.
func (a *Agent) Series(ctx context.Context, c *http.Client) (series, size int, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.API+"metrics", nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("GET %smetrics: %s", a.API, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		size += len(sc.Bytes()) + 1
		if line := sc.Text(); line != "" && !strings.HasPrefix(line, "#") {
			series++
		}
	}
	return series, size, sc.Err()
}

// heartbeatBytes encodes a heartbeat with the first worker's capabilities,
// as the agent sends one every protocol.HeartbeatInterval.
func (f *Fleet) heartbeatBytes(ctx context.Context) (int, error) {
	var ws []struct {
		Capabilities *protocol.WorkerCapabilities `json:"capabilities"`
	}
	if err := f.get(ctx, "/api/workers", &ws); err != nil {
		return 0, err
	}
	if len(ws) == 0 || ws[0].Capabilities == nil {
		return 0, fmt.Errorf("fleet: the studio knows no worker's capabilities")
	}
	b, err := protocol.Encode(protocol.Heartbeat{Capabilities: *ws[0].Capabilities})
	return len(b), err
}

// measureIdle watches the idle fleet for d: the CPU time the studio and
// the agents (with their plugins) use. The window is the measurement, not
// a wait for an event.
func (f *Fleet) measureIdle(ctx context.Context, d time.Duration, rep *Report) error {
	pids := func() ([]int, error) {
		var out []int
		for _, a := range f.Agents {
			out = append(out, a.Pid())
			out = append(out, descendants(a.Pid())...)
		}
		return out, nil
	}
	nodes, err := pids()
	if err != nil {
		return err
	}
	cpu := func(ps []int) float64 {
		var s float64
		for _, p := range ps {
			s += cpuSeconds(p)
		}
		return s
	}
	studio0, nodes0, t0 := cpu([]int{f.StudioPid()}), cpu(nodes), time.Now()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
	}
	el := time.Since(t0).Seconds()
	rep.Idle = d
	rep.StudioIdleCPU = (cpu([]int{f.StudioPid()}) - studio0) / el
	rep.AgentIdleCPU = (cpu(nodes) - nodes0) / el
	return nil
}

// cpuSeconds is a process's user and system CPU time (0 when it cannot be
// read).
func cpuSeconds(pid int) float64 {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0
	}
	st, err := p.Stat()
	if err != nil {
		return 0
	}
	return st.CPUTime()
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

func idleCPU(cores float64, window time.Duration) string {
	if window == 0 {
		return "not measured"
	}
	return fmt.Sprintf("%.4f cores over %s", cores, window)
}

// Print writes the figures and, as the last line, the verdict line
// `lost=L duplicates=D agents=N jobs=M`.
func (r *Report) Print(w io.Writer) {
	mib := func(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	spread := func(xs []int64) string {
		if len(xs) == 0 {
			return "-"
		}
		s := slices.Clone(xs)
		slices.Sort(s)
		var sum int64
		for _, x := range s {
			sum += x
		}
		return fmt.Sprintf("min %s, median %s, max %s, total %s", mib(s[0]), mib(s[len(s)/2]), mib(s[len(s)-1]), mib(sum))
	}
	minMax := func(xs []int) string {
		if len(xs) == 0 {
			return "-"
		}
		return fmt.Sprintf("min %d, max %d", slices.Min(xs), slices.Max(xs))
	}
	rows := [][2]string{
		{"agents", strconv.Itoa(r.Agents)},
		{"jobs", strconv.Itoa(r.Jobs)},
		{"completed", strconv.Itoa(r.Completed)},
		{"failed", strconv.Itoa(r.Failed)},
		{"completed per agent", minMax(r.JobsPerAgent)},
		{"elapsed", r.Elapsed.Round(time.Millisecond).String()},
		{"jobs per second", fmt.Sprintf("%.1f", float64(r.Completed+r.Failed)/max(r.Elapsed.Seconds(), 1e-9))},
		{"agent RSS", spread(r.AgentRSS)},
		{"agent+plugins RSS", spread(r.NodeRSS)},
		{"studio RSS", mib(r.StudioRSS)},
		{"series per agent", minMax(r.Series)},
		{"scrape bytes per agent", minMax(r.ScrapeBytes)},
		{"heartbeat frame bytes", strconv.Itoa(r.HeartbeatBytes)},
		{"idle CPU, studio", idleCPU(r.StudioIdleCPU, r.Idle)},
		{"idle CPU, all agents", idleCPU(r.AgentIdleCPU, r.Idle)},
		{"load average", r.LoadAvg},
	}
	for _, row := range rows {
		fmt.Fprintf(w, "%-24s %s\n", row[0], row[1])
	}
	fmt.Fprintf(w, "lost=%d duplicates=%d agents=%d jobs=%d\n", r.Lost, r.Duplicates, r.Agents, r.Jobs)
}
