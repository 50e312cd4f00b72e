// Package fleet runs a fleet of real `stoker agent` processes on one
// machine against one `stoker studio` process (the dev studio run alone),
// all on loopback, each agent with its own state directory, local API and
// plugins. scripts/fleet.sh drives it through its command (fleet/) to
// measure a farm's cost per node; the monitoring tests start a fleet of
// one to have a running agent to scrape.
//
// Agents register like any node: the studio runs with -auto-approve, and
// each agent's first registration poll (protocol.RegistrationPollInterval
// after its request) brings its credentials.
package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/stokerhq/stoker/supervisor/internal/childproc"
)

// Config configures a fleet.
type Config struct {
	// Stoker is the stoker executable; PluginDir holds the plugins every
	// agent runs (synthetic-plugin). Both are required, and must be
	// changeable by their owner only (the agent refuses plugins others can
	// write).
	Stoker    string
	PluginDir string
	// Agents is how many agents to run (default 1).
	Agents int
	// WorkDir holds the agents' state directories. Required.
	WorkDir string
	// Env is added to every agent's environment (STOKER_* settings).
	Env []string
	// Log, if set, receives the studio's and the agents' stderr lines.
	Log io.Writer
}

// Fleet is a running studio and its agents.
type Fleet struct {
	// StudioURL is the studio's base URL ("http://127.0.0.1:port").
	StudioURL string
	// Agents are the agents, in start order.
	Agents []*Agent

	studio *childproc.Proc
	client *http.Client
}

// Agent is one running agent.
type Agent struct {
	// Name is its machine name (fleet-<i>), StateDir its state directory.
	Name     string
	StateDir string
	// API is its local API's base URL, known once it listens.
	API string

	p *childproc.Proc
}

// Pid is the agent process's id.
func (a *Agent) Pid() int { return a.p.Pid() }

var studioURL = regexp.MustCompile(`dev studio running: url=(http://\S+)`)

// Start starts the studio, then the agents, and returns once every agent's
// local API listens and every agent is connected to the studio (welcomed,
// with its capabilities). On failure everything started is stopped.
func Start(ctx context.Context, cfg Config) (f *Fleet, err error) {
	if cfg.Stoker == "" || cfg.PluginDir == "" || cfg.WorkDir == "" {
		return nil, errors.New("fleet: Stoker, PluginDir and WorkDir are required")
	}
	if cfg.Agents <= 0 {
		cfg.Agents = 1
	}
	f = &Fleet{client: &http.Client{Timeout: 30 * time.Second}}
	defer func() {
		if err != nil {
			f.Close()
			f = nil
		}
	}()
	var logMu sync.Mutex
	// logged hands each line to cfg.Log, one line at a time from every
	// process, then to line.
	logged := func(line func([]byte)) func([]byte) {
		return func(b []byte) {
			line(b)
			if cfg.Log != nil {
				logMu.Lock()
				cfg.Log.Write(append(b, '\n'))
				logMu.Unlock()
			}
		}
	}
	urlCh := make(chan string, 1)
	f.studio, err = childproc.Start(exec.Command(cfg.Stoker, "studio", "-auto-approve", "-listen", "127.0.0.1:0"), logged(func(b []byte) {
		if m := studioURL.FindSubmatch(b); m != nil {
			select {
			case urlCh <- string(m[1]):
			default:
			}
		}
	}), nil)
	if err != nil {
		return nil, fmt.Errorf("fleet: studio: %w", err)
	}
	select {
	case f.StudioURL = <-urlCh:
	case <-f.studio.Done():
		return nil, fmt.Errorf("fleet: the studio exited: %v", f.studio.Err())
	case <-ctx.Done():
		return nil, fmt.Errorf("fleet: the studio never said where it listens: %w", ctx.Err())
	}

	apis := make(chan struct{}, cfg.Agents)
	for i := range cfg.Agents {
		a := &Agent{Name: "fleet-" + strconv.Itoa(i), StateDir: filepath.Join(cfg.WorkDir, "agent-"+strconv.Itoa(i))}
		if err := os.MkdirAll(a.StateDir, 0o700); err != nil {
			return nil, err
		}
		cmd := exec.Command(cfg.Stoker, "agent")
		cmd.Env = append(os.Environ(),
			"STOKER_API_BASE_URL="+f.StudioURL+"/",
			"STOKER_STATE_DIR="+a.StateDir,
			"STOKER_PLUGIN_DIR="+cfg.PluginDir,
			"STOKER_LISTEN=127.0.0.1:0",
			"STOKER_MACHINE_NAME="+a.Name,
			"STOKER_LOG_JSON=true",
			"STOKER_FETCH_ALLOW=127.0.0.0/8,::1",
		)
		cmd.Env = append(cmd.Env, cfg.Env...)
		var once sync.Once
		a.p, err = childproc.Start(cmd, logged(func(b []byte) {
			var e struct {
				Msg string `json:"@message"`
				URL string `json:"url"`
			}
			if json.Unmarshal(b, &e) == nil && e.Msg == "local API listening" {
				once.Do(func() {
					a.API = e.URL // read only after apis says so
					apis <- struct{}{}
				})
			}
		}), nil)
		if err != nil {
			return nil, fmt.Errorf("fleet: agent %d: %w", i, err)
		}
		f.Agents = append(f.Agents, a)
	}
	for range cfg.Agents {
		select {
		case <-apis:
		case <-ctx.Done():
			return nil, fmt.Errorf("fleet: not every agent's local API came up: %w", ctx.Err())
		}
	}
	for i, a := range f.Agents {
		if a.API == "" {
			return nil, fmt.Errorf("fleet: agent %d has no local API", i)
		}
	}
	if err := f.waitConnected(ctx, cfg.Agents); err != nil {
		return nil, err
	}
	return f, nil
}

// pollEvery is how often the fleet asks the studio for what it waits on:
// the studio is another process, and its API is the only way to see it.
const pollEvery = 50 * time.Millisecond

// waitConnected waits until n workers are connected with capabilities.
func (f *Fleet) waitConnected(ctx context.Context, n int) error {
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		var ws []struct {
			Connected    bool            `json:"connected"`
			Capabilities json.RawMessage `json:"capabilities"`
		}
		if err := f.get(ctx, "/api/workers", &ws); err != nil {
			return err
		}
		ready := 0
		for _, w := range ws {
			if w.Connected && len(w.Capabilities) > 0 {
				ready++
			}
		}
		if ready >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("fleet: %d of %d agents connected: %w", ready, n, ctx.Err())
		case <-f.studio.Done():
			return fmt.Errorf("fleet: the studio exited: %v", f.studio.Err())
		case <-t.C:
		}
	}
}

// Close stops the agents (SIGTERM, a drain; all at once) and then the
// studio. It returns the first unexpected exit.
func (f *Fleet) Close() error {
	var wg sync.WaitGroup
	errs := make([]error, len(f.Agents))
	for i, a := range f.Agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.p.Stop(syscall.SIGTERM, 90*time.Second); err != nil {
				errs[i] = fmt.Errorf("agent %s: %w", a.Name, err)
			}
		}()
	}
	wg.Wait()
	if f.studio != nil {
		if err := f.studio.Stop(syscall.SIGTERM, 30*time.Second); err != nil {
			errs = append(errs, fmt.Errorf("studio: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Submit submits a job to the studio and returns its id.
func (f *Fleet) Submit(ctx context.Context, model string, task any) (string, error) {
	body, err := json.Marshal(map[string]any{"model": model, "task": task})
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.StudioURL+"/api/jobs", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		ID    string `json:"id"`
		Error string `json:"error"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil {
		return "", fmt.Errorf("submit: %s: %w", resp.Status, err)
	}
	if resp.StatusCode/100 != 2 || out.ID == "" {
		return "", fmt.Errorf("submit: %s: %s", resp.Status, out.Error)
	}
	return out.ID, nil
}

// Job is what the studio says of a job (devstudio.JobView, in part).
type Job struct {
	ID        string `json:"id"`
	Status    string `json:"status"`
	Attempts  int    `json:"attempts"`
	Worker    string `json:"worker"`
	Error     string `json:"error"`
	Retryable bool   `json:"retryable"`
}

// Done reports whether the job reached a final state.
func (j Job) Done() bool { return j.Status == "completed" || j.Status == "failed" }

// Jobs lists every job the studio holds.
func (f *Fleet) Jobs(ctx context.Context) ([]Job, error) {
	var js []Job
	return js, f.get(ctx, "/api/jobs", &js)
}

// WaitJobs waits until every job in ids is done and returns them all (in
// the studio's order), or what there is when ctx ends.
func (f *Fleet) WaitJobs(ctx context.Context, ids []string) ([]Job, error) {
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		js, err := f.Jobs(ctx)
		if err != nil {
			return nil, err
		}
		var mine []Job
		done := 0
		for _, j := range js {
			if want[j.ID] {
				mine = append(mine, j)
				if j.Done() {
					done++
				}
			}
		}
		if done == len(want) {
			return mine, nil
		}
		select {
		case <-ctx.Done():
			return mine, fmt.Errorf("fleet: %d of %d jobs done: %w", done, len(want), ctx.Err())
		case <-t.C:
		}
	}
}

// Stats is what the studio received (devstudio.Stats).
type Stats struct {
	Accepts  int `json:"accepts"`
	Outcomes int `json:"outcomes"`
	Stray    int `json:"stray"`
}

// Stats asks the studio for its counts.
func (f *Fleet) Stats(ctx context.Context) (Stats, error) {
	var s Stats
	return s, f.get(ctx, "/api/stats", &s)
}

// StudioPid is the studio process's id.
func (f *Fleet) StudioPid() int { return f.studio.Pid() }

func (f *Fleet) get(ctx context.Context, path string, v any) error {
	return getJSON(ctx, f.client, f.StudioURL+path, v)
}

func getJSON(ctx context.Context, c *http.Client, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
