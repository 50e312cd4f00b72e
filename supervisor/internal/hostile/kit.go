package hostile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Config configures a run.
type Config struct {
	// Stoker is the stoker executable; PluginDir holds synthetic-plugin,
	// faults-plugin and any plugin a case needs.
	Stoker    string
	PluginDir string
	// WorkDir holds each case's agent state (default: a temporary dir).
	WorkDir string
	// Cases names the cases to run, in order (default: all, see Cases).
	Cases []string
	// Scale multiplies the cases' sizes (default 1: the issue's, such as
	// 100,000 offers; the package's test runs at a small fraction).
	Scale float64
	// CaseTimeout bounds one case (default 3m).
	CaseTimeout time.Duration
	// Log receives a line per case as it ends; AgentLog the agents' logs.
	Log      io.Writer
	AgentLog io.Writer
}

// Case is one way of attacking the node. Run drives the agent through
// the Env and records what it saw: each bound the node broke
// (Env.Unbounded), each job lost (Env.Lost), and figures for the report.
// A returned error means the case could not be carried out; it counts as
// a broken bound.
type Case struct {
	Name string
	// What says in one line what the hostile peer does and what must hold.
	What string
	// AgentEnv adds STOKER_ variables to the case's agent (a stall
	// timeout, a crash limit).
	AgentEnv []string
	Run      func(ctx context.Context, e *Env) error
}

// Cases returns every case of the kit, studio cases first.
func Cases() []Case {
	return slices.Concat(studioCases(), pluginCases())
}

// Result is one case's outcome.
type Result struct {
	Name      string
	Crashed   bool     // the agent died without being asked to
	Unbounded []string // bounds it broke
	Lost      []string // jobs lost
	Figures   []string // "name value" lines for the report
	Elapsed   time.Duration
}

// OK reports whether the case found nothing wrong.
func (r Result) OK() bool { return !r.Crashed && len(r.Unbounded) == 0 && len(r.Lost) == 0 }

// Report is a run's results.
type Report struct {
	Results []Result
}

// Counts returns the verdict line's numbers.
func (r *Report) Counts() (crashes, unbounded, lost int) {
	for _, res := range r.Results {
		if res.Crashed {
			crashes++
		}
		unbounded += len(res.Unbounded)
		lost += len(res.Lost)
	}
	return crashes, unbounded, lost
}

// Print writes a block per case and, as the last line,
// "node_crashes=C unbounded=U lost=L cases=N".
func (r *Report) Print(w io.Writer) {
	for _, res := range r.Results {
		verdict := "ok"
		if !res.OK() {
			verdict = "FAILED"
		}
		fmt.Fprintf(w, "%-28s %s (%s)\n", res.Name, verdict, res.Elapsed.Round(time.Millisecond))
		for _, f := range res.Figures {
			fmt.Fprintf(w, "    %s\n", f)
		}
		if res.Crashed {
			fmt.Fprintf(w, "    NODE CRASHED\n")
		}
		for _, u := range res.Unbounded {
			fmt.Fprintf(w, "    UNBOUNDED: %s\n", u)
		}
		for _, l := range res.Lost {
			fmt.Fprintf(w, "    LOST: %s\n", l)
		}
	}
	c, u, l := r.Counts()
	fmt.Fprintf(w, "node_crashes=%d unbounded=%d lost=%d cases=%d\n", c, u, l, len(r.Results))
}

// Env is what a case drives: a fresh hostile studio and a fresh agent
// process connected to it, warmed up by one job, with its idle memory
// measured.
type Env struct {
	Studio *Studio
	Agent  *Agent
	// Conn is the session the case starts with; Session waits for a
	// later one.
	Conn *Conn
	// IdleRSS is the agent's resident memory once connected and warmed
	// up, before the case.
	IdleRSS int64
	// Scale multiplies the case's sizes (see Config.Scale).
	Scale float64

	res *Result
}

// Unbounded records a bound the node broke.
func (e *Env) Unbounded(format string, args ...any) {
	e.res.Unbounded = append(e.res.Unbounded, fmt.Sprintf(format, args...))
}

// Lost records a job the node lost.
func (e *Env) Lost(format string, args ...any) {
	e.res.Lost = append(e.res.Lost, fmt.Sprintf(format, args...))
}

// Figure records a figure for the report.
func (e *Env) Figure(format string, args ...any) {
	e.res.Figures = append(e.res.Figures, fmt.Sprintf(format, args...))
}

// Scaled returns n times the scale, at least 1.
func (e *Env) Scaled(n int) int { return max(1, int(float64(n)*e.Scale)) }

// MaxRSSGrowth is how far above its idle resident memory the agent may go
// under any studio case (the bound).
const MaxRSSGrowth = 64 << 20

// CheckRSS records peak against the bound, with the figure.
func (e *Env) CheckRSS(what string, peak int64) {
	e.Figure("rss %s: idle %s, peak %s (+%s; bound +%s)", what, mib(e.IdleRSS), mib(peak), mib(peak-e.IdleRSS), mib(MaxRSSGrowth))
	if peak-e.IdleRSS > MaxRSSGrowth {
		e.Unbounded("resident memory %s: from %s to %s, more than %s above idle", what, mib(e.IdleRSS), mib(peak), mib(MaxRSSGrowth))
	}
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// Session waits for the agent's next session (after a reconnect) and makes
// it e.Conn.
func (e *Env) Session(ctx context.Context) (*Conn, error) {
	c, err := e.Studio.NextConn(ctx)
	if err != nil {
		return nil, err
	}
	e.Conn = c
	return c, nil
}

// ServeAfter runs a normal job on the current session (or, if that has
// ended, the next one) and records it lost unless it completes: the node
// must serve a job right after an attack.
func (e *Env) ServeAfter(ctx context.Context, j Job) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	start := time.Now()
	for attempt := 0; attempt < 3; attempt++ {
		select {
		case <-e.Conn.Done():
			if _, err := e.Session(ctx); err != nil {
				e.Lost("job %s after the attack: %v", short(j.ID), err)
				return
			}
		default:
		}
		out, err := e.Conn.Run(ctx, j)
		if errors.Is(err, errSessionEnded) {
			j.ID += "-again" // the session died under it; a studio requeues
			continue
		}
		if err != nil || !out.Completed() {
			e.Lost("job %s after the attack: %s (%v)", short(j.ID), out, err)
			return
		}
		e.Figure("served a job after: %s in %s", out, time.Since(start).Round(time.Millisecond))
		return
	}
	e.Lost("job %s after the attack: three sessions ended under it", short(j.ID))
}

// Run runs the configured cases, each against a fresh studio and a fresh
// agent. It returns an error only when the run could not be carried out
// (an unknown case name); what went wrong in a case is in the report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Scale == 0 {
		cfg.Scale = 1
	}
	if cfg.CaseTimeout == 0 {
		cfg.CaseTimeout = 3 * time.Minute
	}
	if cfg.WorkDir == "" {
		dir, err := os.MkdirTemp("", "stress-hostile-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		cfg.WorkDir = dir
	}
	all := Cases()
	run := all
	if len(cfg.Cases) > 0 {
		run = nil
		for _, name := range cfg.Cases {
			i := slices.IndexFunc(all, func(c Case) bool { return c.Name == name })
			if i < 0 {
				return nil, fmt.Errorf("hostile: no case %q", name)
			}
			run = append(run, all[i])
		}
	}
	rep := &Report{}
	for i, c := range run {
		if ctx.Err() != nil {
			break
		}
		res := runCase(ctx, cfg, c, filepath.Join(cfg.WorkDir, fmt.Sprintf("%02d-%s", i, c.Name)))
		rep.Results = append(rep.Results, res)
		if cfg.Log != nil {
			verdict := "ok"
			if !res.OK() {
				verdict = "FAILED"
			}
			fmt.Fprintf(cfg.Log, "case %s: %s in %s\n", c.Name, verdict, res.Elapsed.Round(time.Millisecond))
		}
	}
	return rep, nil
}

func runCase(ctx context.Context, cfg Config, c Case, dir string) (res Result) {
	res.Name = c.Name
	start := time.Now()
	defer func() { res.Elapsed = time.Since(start) }()
	ctx, cancel := context.WithTimeout(ctx, cfg.CaseTimeout)
	defer cancel()
	st, err := NewStudio("w-hostile", "hostile-token-0123456789abcdef0123456789abcdef")
	if err != nil {
		res.Unbounded = append(res.Unbounded, "could not start the studio: "+err.Error())
		return res
	}
	defer st.Close()
	a, err := StartAgent(AgentConfig{Stoker: cfg.Stoker, PluginDir: cfg.PluginDir, StateDir: filepath.Join(dir, "state"), Studio: st, Env: c.AgentEnv, Log: cfg.AgentLog})
	if err != nil {
		res.Unbounded = append(res.Unbounded, "could not start the agent: "+err.Error())
		return res
	}
	defer func() {
		a.Stop()
		res.Crashed = a.Crashed()
		if res.Crashed {
			res.Figures = append(res.Figures, "agent's last lines:\n"+indent(a.Tail()))
		}
	}()
	e := &Env{Studio: st, Agent: a, Scale: cfg.Scale, res: &res}
	// Watch for the node dying under the case: a crash ends the case.
	ctx, stopCase := context.WithCancel(ctx)
	defer stopCase()
	go func() {
		select {
		case <-a.Exited():
			stopCase()
		case <-ctx.Done():
		}
	}()
	if _, err := e.Session(ctx); err != nil {
		res.Unbounded = append(res.Unbounded, "the agent never connected: "+err.Error()+"\n"+indent(a.Tail()))
		return res
	}
	// Warm up (plugins launched, one job through), then take the idle
	// resident memory: the highest of a few samples.
	if out, err := e.Conn.Run(ctx, LLMJob("warm-up")); err != nil || !out.Completed() {
		res.Unbounded = append(res.Unbounded, fmt.Sprintf("the warm-up job: %s (%v)", out, err))
		return res
	}
	for range 10 {
		e.IdleRSS = max(e.IdleRSS, a.RSS())
		time.Sleep(30 * time.Millisecond) // sampling pace
	}
	if err := c.Run(ctx, e); err != nil {
		if a.Crashed() {
			return res // reported as a crash
		}
		res.Unbounded = append(res.Unbounded, "the case could not be carried out: "+err.Error())
	}
	return res
}

func indent(s string) string {
	return "      " + strings.ReplaceAll(s, "\n", "\n      ")
}
