package plugins

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"regexp"
	"time"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"
)

// LaunchConfig says how to start one plugin process.
type LaunchConfig struct {
	// Path is the plugin executable.
	Path string
	// Args are extra command-line arguments (none by default).
	Args []string
	// Env is added to the supervisor's environment for the plugin.
	Env []string
	// Logger receives the plugin's log lines, re-levelled, under the
	// plugin's name. (default: hclog.NewNullLogger())
	Logger hclog.Logger
	// StartTimeout bounds the handshake. (default 10s)
	StartTimeout time.Duration
	// Stderr, if set, also receives the plugin's raw stderr.
	Stderr io.Writer
	// StderrLines is how many of the last stderr lines are kept for crash
	// reports. (default 20)
	StderrLines int
}

// Plugin is a running engine plugin. It implements [Engine] and
// [ModelManager] over gRPC and adds process supervision. A Plugin is not
// restartable: once it has exited, launch a new one.
type Plugin struct {
	*grpcClient
	client *plugin.Client
	proc   *process
	tail   *stderrTail
	path   string
}

var _ Engine = (*Plugin)(nil)

// Launch starts the plugin at cfg.Path, completes the go-plugin handshake
// (with mutual TLS) and returns the connected plugin. It blocks for at most
// cfg.StartTimeout; on failure no process is left behind.
func Launch(cfg LaunchConfig) (*Plugin, error) {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 10 * time.Second
	}
	if cfg.StderrLines == 0 {
		cfg.StderrLines = 20
	}
	path, err := filepath.Abs(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("launch %s: %w", cfg.Path, err)
	}
	p := &Plugin{tail: newStderrTail(cfg.StderrLines), path: path}
	var stderr io.Writer = p.tail
	if cfg.Stderr != nil {
		stderr = io.MultiWriter(p.tail, cfg.Stderr)
	}
	p.client = plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: pluginSet(nil),
		RunnerFunc: func(_ hclog.Logger, spec *exec.Cmd, _ string) (runner.Runner, error) {
			// spec carries the environment go-plugin prepared (the
			// handshake, the mTLS certificate, the socket dir).
			env := append(spec.Env, cfg.Env...)
			proc, err := newProcess(path, cfg.Args, env)
			p.proc = proc
			return proc, err
		},
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		Logger:           cfg.Logger,
		Stderr:           stderr,
		StartTimeout:     cfg.StartTimeout,
		// The supervisor owns plugin lifetimes; go-plugin's process-global
		// cleanup list is not used.
		Managed: false,
	})
	rpc, err := p.client.Client()
	if err != nil {
		p.client.Kill()
		return nil, fmt.Errorf("launch %s: %w", filepath.Base(path), err)
	}
	raw, err := rpc.Dispense(pluginName)
	if err != nil {
		p.client.Kill()
		return nil, fmt.Errorf("launch %s: dispense: %w", filepath.Base(path), err)
	}
	gc, ok := raw.(*grpcClient)
	if !ok {
		p.client.Kill()
		return nil, fmt.Errorf("launch %s: dispensed %T, want the engine client", filepath.Base(path), raw)
	}
	p.grpcClient = gc
	return p, nil
}

// Path is the plugin's executable.
func (p *Plugin) Path() string { return p.path }

// Pid is the plugin's process id.
func (p *Plugin) Pid() int {
	if p.proc == nil || p.proc.cmd.Process == nil {
		return 0
	}
	return p.proc.cmd.Process.Pid
}

// Exited returns a channel that is closed once the plugin process is gone.
func (p *Plugin) Exited() <-chan struct{} { return p.proc.exited }

// ExitStatus reports how the process ended; it is meaningful only after
// Exited is closed.
func (p *Plugin) ExitStatus() ExitStatus { return p.proc.exitStatus() }

// StderrTail returns the plugin's last stderr lines, oldest first.
func (p *Plugin) StderrTail() []string { return p.tail.Lines() }

// Kill stops the plugin: go-plugin asks it to exit gracefully, then kills
// its process group. It blocks until the process is gone and may be called
// more than once.
func (p *Plugin) Kill() {
	p.client.Kill()
	if p.proc != nil {
		_ = p.proc.Kill(context.Background())
		<-p.proc.exited
	}
}

// goSignal finds the signal in a Go runtime crash line such as
// "SIGSEGV: segmentation violation" or "fatal error: unexpected signal".
var goSignal = regexp.MustCompile(`^(SIG[A-Z]+): `)

// crashGrace is how long Run waits, after the stream broke, for the process
// to be reaped so the report can carry its exit status. A dead process
// closes its socket and is reaped within microseconds; the bound only
// matters for a plugin that closed its socket but lives on.
const crashGrace = 2 * time.Second

// Run runs a job on the plugin (see [Engine.Run]). When the plugin process
// dies mid-job, the returned *JobError is of kind ErrCrashed (or
// ErrOutOfMemory when the kernel's OOM killer is the likely cause) and
// carries the exit code or signal and the plugin's last stderr lines.
func (p *Plugin) Run(ctx context.Context, req *RunRequest, ev Events) error {
	oomBefore, oomKnown := oomKillCount()
	err := p.grpcClient.Run(ctx, req, ev)
	if !errors.Is(err, errBrokenStream) {
		return err
	}
	je := AsJobError(err)
	select {
	case <-p.proc.exited:
	case <-time.After(crashGrace):
		je.Message = fmt.Sprintf("plugin %s: %s; the process is still running", filepath.Base(p.path), errBrokenStream)
		je.StderrTail = p.StderrTail()
		return je
	}
	st := p.ExitStatus()
	je.ExitCode, je.Signal, je.StderrTail = st.Code, st.Signal, p.StderrTail()
	je.Message = fmt.Sprintf("plugin %s crashed mid-job: %s", filepath.Base(p.path), st)
	if h := p.tail.Headline(); h != "" {
		// A Go plugin catches fatal signals itself, prints the cause and
		// exits with code 2; name the signal from its own words.
		if m := goSignal.FindStringSubmatch(h); m != nil && je.Signal == "" {
			je.Signal = m[1]
		}
		je.Message += ": " + h
	}
	if oomAfter, ok := oomKillCount(); st.Signal == "SIGKILL" && oomKnown && ok && oomAfter > oomBefore {
		je.Kind = ErrOutOfMemory
		je.Message = fmt.Sprintf("plugin %s was killed by the kernel's OOM killer mid-job", filepath.Base(p.path))
	}
	return je
}
