package hostile

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
	"strings"
	"sync"
	"time"

	"github.com/stokerhq/stoker/supervisor/internal/childproc"
)

// Agent is the real `stoker agent` process under attack. Create it with
// StartAgent; Stop ends it. It counts the times it died without being
// asked to: each is a node crash.
type Agent struct {
	p        *childproc.Proc
	stateDir string

	mu       sync.Mutex // guards the fields below
	stopping bool
	crashed  bool
	api      string // the local API's base URL, once logged
	apiSeen  chan struct{}
	tail     []string // the last lines of its log, for a crash report
}

// AgentConfig is what StartAgent needs.
type AgentConfig struct {
	Stoker    string
	PluginDir string
	StateDir  string
	Studio    *Studio
	// Env adds STOKER_ variables (a case's own settings).
	Env []string
	// Log, if set, receives the agent's log lines.
	Log io.Writer
}

// StartAgent starts `stoker agent` against the studio, with its local API
// on a free loopback port (for pause and resume) and JSON logs.
func StartAgent(cfg AgentConfig) (*Agent, error) {
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, err
	}
	cmd := exec.Command(cfg.Stoker, "agent")
	cmd.Env = append(os.Environ(),
		"STOKER_API_BASE_URL="+cfg.Studio.URL(),
		"STOKER_WORKER_ID="+cfg.Studio.WorkerID,
		"STOKER_AUTH_TOKEN="+cfg.Studio.Token,
		"STOKER_STATE_DIR="+cfg.StateDir,
		"STOKER_PLUGIN_DIR="+cfg.PluginDir,
		"STOKER_LISTEN=127.0.0.1:0",
		"STOKER_LOG_JSON=true",
		"STOKER_DRAIN_TIMEOUT=5s",
	)
	cmd.Env = append(cmd.Env, cfg.Env...)
	a := &Agent{stateDir: cfg.StateDir, apiSeen: make(chan struct{})}
	p, err := childproc.Start(cmd, func(line []byte) { a.line(line, cfg.Log) }, func(error) {
		a.mu.Lock()
		a.crashed = !a.stopping
		a.mu.Unlock()
	})
	if err != nil {
		return nil, err
	}
	a.p = p
	return a, nil
}

// line takes one line of the agent's JSON log: it keeps the last lines
// and notes the local API's address.
func (a *Agent) line(line []byte, tee io.Writer) {
	if tee != nil {
		_, _ = tee.Write(append(line, '\n'))
	}
	var e struct {
		Msg string `json:"@message"`
		URL string `json:"url"`
	}
	_ = json.Unmarshal(line, &e)
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(line) > 2000 {
		line = append(line[:2000:2000], "…"...)
	}
	a.tail = append(a.tail, string(line))
	if len(a.tail) > 20 {
		a.tail = a.tail[1:]
	}
	if e.Msg == "local API listening" && a.api == "" {
		a.api = strings.TrimSuffix(e.URL, "/")
		close(a.apiSeen)
	}
}

// PID is the agent's process id.
func (a *Agent) PID() int { return a.p.Pid() }

// Exited is closed when the process has exited.
func (a *Agent) Exited() <-chan struct{} { return a.p.Done() }

// Crashed reports whether the process exited without being asked to.
func (a *Agent) Crashed() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.crashed
}

// Tail returns the agent's last log lines and, once it has exited, how.
func (a *Agent) Tail() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := strings.Join(a.tail, "\n")
	if err := a.p.Err(); err != nil {
		s += "\nexit: " + err.Error()
	}
	return s
}

// Stop asks the agent to stop (SIGINT, a drain) and waits for it; after
// 30 s it is killed. It may be called more than once.
func (a *Agent) Stop() {
	a.mu.Lock()
	a.stopping = true
	a.mu.Unlock()
	_ = a.p.Stop(os.Interrupt, 30*time.Second)
}

// RSS returns the agent's resident memory in bytes (VmRSS), or 0 once it
// has exited.
func (a *Agent) RSS() int64 {
	n, _ := childproc.RSS(a.PID())
	return n
}

// WatchRSS samples RSS every 20 ms until the returned func is called,
// which returns the highest sample.
func (a *Agent) WatchRSS() (stop func() int64) {
	var peak int64
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			peak = max(peak, a.RSS())
			select {
			case <-quit:
				return
			case <-t.C:
			}
		}
	}()
	return sync.OnceValue(func() int64 {
		close(quit)
		<-done
		return peak
	})
}

// SetPaused pauses or resumes the agent through its local API (POST
// /v1/pause or /v1/resume with the token from its state dir).
func (a *Agent) SetPaused(ctx context.Context, paused bool) error {
	select {
	case <-a.apiSeen:
	case <-ctx.Done():
		return fmt.Errorf("the agent never logged its local API address: %w", ctx.Err())
	}
	a.mu.Lock()
	base := a.api
	a.mu.Unlock()
	route := "/v1/resume"
	if paused {
		route = "/v1/pause"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+route, bytes.NewReader([]byte("{}")))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if tok, err := os.ReadFile(filepath.Join(a.stateDir, "local-api-token")); err == nil {
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	if resp.StatusCode != http.StatusOK {
		return errors.New(route + ": " + resp.Status + ": " + string(body))
	}
	return nil
}
