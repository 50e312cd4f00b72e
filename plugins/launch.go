package plugins

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"
	"google.golang.org/grpc"
)

// LaunchConfig says how to start one plugin process.
type LaunchConfig struct {
	// Path is the plugin executable.
	Path string
	// Args are extra command-line arguments (none by default).
	Args []string
	// Env is the plugin's environment, besides the variables of
	// go-plugin's handshake. Nothing of the supervisor's own environment
	// is inherited: pass what a plugin should see, e.g. Env(os.Environ(),
	// nil) for the allow-listed part (see PassEnv).
	Env []string
	// Logger receives the plugin's log lines, re-levelled, under the
	// plugin's name. (default: hclog.NewNullLogger())
	Logger hclog.Logger
	// StartTimeout bounds the handshake. (default 10s)
	StartTimeout time.Duration
	// Stderr, if set, also receives the plugin's raw stderr.
	Stderr io.Writer
	// Stdout, if set, receives every byte the plugin writes to its stdout,
	// the handshake line included (go-plugin reads the handshake line and
	// discards the rest). It is written from go-plugin's reader, and has
	// all of it once Kill or KillNow has returned.
	Stdout io.Writer
	// StderrLines is how many of the last stderr lines are kept for crash
	// reports. (default 20)
	StderrLines int
	// SHA256, if set, pins the executable: its hex SHA-256 is checked right
	// before the process starts, and a mismatch refuses the launch with an
	// error wrapping ErrChecksum. (go-plugin's SecureConfig cannot be
	// combined with a RunnerFunc, so Launch checks itself.) The file is
	// opened once, hashed from that descriptor and executed from it
	// (/proc/self/fd on Linux): the bytes hashed are the bytes that run,
	// whatever happens to the name in between.
	SHA256 string
	// Started, if set, is called with the process id as soon as the
	// process exists, before the handshake (the supervisor records it for
	// its start-up reaper). It must not block.
	Started func(pid int)
}

// ErrChecksum is wrapped by Launch's error when the executable does not
// match LaunchConfig.SHA256.
var ErrChecksum = errors.New("plugin checksum mismatch")

// VerifySHA256 checks that the file at path has the hex SHA-256 want
// (either case). The error wraps ErrChecksum on a mismatch.
func VerifySHA256(path, want string) error {
	f, err := openNoFollow(path)
	if err != nil {
		return fmt.Errorf("verify %s: %w", filepath.Base(path), err)
	}
	defer f.Close()
	return verifyFile(f, path, want)
}

// verifyFile checks that the open file f (named path) has the hex SHA-256
// want.
func verifyFile(f *os.File, path, want string) error {
	wantSum, err := hex.DecodeString(strings.TrimSpace(want))
	if err != nil || len(wantSum) != sha256.Size {
		return fmt.Errorf("sha256 pin %q for %s: not 64 hex digits", want, filepath.Base(path))
	}
	h := sha256.New()
	if err := hashFile(f, h); err != nil {
		return fmt.Errorf("verify %s: %w", filepath.Base(path), err)
	}
	if got := h.Sum(nil); !bytes.Equal(got, wantSum) {
		return fmt.Errorf("%w: %s has sha256 %x, the configured pin is %x; refusing to run it", ErrChecksum, path, got, wantSum)
	}
	return nil
}

// afterVerify, if set, is called between the checks of a launch and the
// exec: a test swaps the file there (see export_test.go).
var afterVerify func(path string)

// Plugin is a running engine plugin. It implements [Engine] and
// [ModelManager] over gRPC and adds process supervision. A Plugin is not
// restartable: once it has exited, launch a new one.
type Plugin struct {
	*grpcClient
	client *plugin.Client
	proc   *process
	tail   *stderrTail
	path   string
	// log is the logger the plugin's stderr lines go to, within its log
	// budget (shared with the job log events of grpcClient).
	log *budgetLogger
	// oomFile is where the plugin's cgroup counts OOM kills, found on the
	// first Run (a plugin may move itself into a cgroup before it serves).
	oomFile func() string

	oomMu sync.Mutex // guards the two below
	// oomCount is the count last read from oomFile (oomOK: it could be
	// read), at oomAt.
	oomCount uint64
	oomOK    bool
	oomAt    time.Time
}

// oomStale is how old the OOM kill count read before a job may be. A sysfs
// read costs tens of microseconds, which a short job would wait for if the
// count were read before each; a count up to a second old can only make a
// SIGKILL that follows an OOM kill in the plugin's cgroup within that
// second count as out of memory, which under that memory pressure it most
// likely is.
const oomStale = time.Second

// oomBaseline returns the cgroup's OOM kill count before a job: the last
// count read, or a fresh one when that is older than oomStale.
func (p *Plugin) oomBaseline(file string) (uint64, bool) {
	p.oomMu.Lock()
	defer p.oomMu.Unlock()
	if now := time.Now(); now.Sub(p.oomAt) > oomStale {
		p.oomCount, p.oomOK = oomKillCount(file)
		p.oomAt = now
	}
	return p.oomCount, p.oomOK
}

var _ Engine = (*Plugin)(nil)

// Launch starts the plugin at cfg.Path, completes the go-plugin handshake
// (with mutual TLS) and returns the connected plugin. It blocks for at most
// cfg.StartTimeout; on failure no process is left behind.
//
// The executable must pass CheckPath (nobody but root and this user can
// change it, no symbolic link), and is opened once: checked, hashed for a
// pin and executed from that one descriptor. The plugin gets exactly
// cfg.Env (plus go-plugin's handshake variables) as its environment, and
// no descriptor of the supervisor's but its stdio: Launch marks every
// descriptor of this process close-on-exec before it forks.
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
	exe, err := openPlugin(path)
	if err != nil {
		return nil, fmt.Errorf("launch %s: %w", filepath.Base(path), err)
	}
	defer exe.Close() // the child has its own copy once started
	if cfg.SHA256 != "" {
		if err := verifyFile(exe, path, cfg.SHA256); err != nil {
			return nil, fmt.Errorf("launch %s: %w", filepath.Base(path), err)
		}
	}
	if afterVerify != nil {
		afterVerify(path)
	}
	budget := newLogBudget()
	p := &Plugin{tail: newStderrTail(cfg.StderrLines), path: path, log: newBudgetLogger(cfg.Logger, budget)}
	p.oomFile = sync.OnceValue(func() string { return oomKillFile(p.Pid()) })
	var stderr io.Writer = p.tail
	if cfg.Stderr != nil {
		stderr = io.MultiWriter(p.tail, cfg.Stderr)
	}
	mtls, err := newLaunchTLS()
	if err != nil {
		return nil, fmt.Errorf("launch %s: %w", filepath.Base(path), err)
	}
	p.client = plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: pluginSet(nil),
		// The plugin's environment is cfg.Env, not the supervisor's.
		SkipHostEnv: true,
		RunnerFunc: func(_ hclog.Logger, spec *exec.Cmd, _ string) (runner.Runner, error) {
			// spec carries the environment go-plugin prepared (the
			// handshake, the socket dir); the host's certificate is ours
			// (mtls.go), and the plugin's goes down a descriptor.
			env := append(append(spec.Env, "PLUGIN_CLIENT_CERT="+string(mtls.clientPEM)), cfg.Env...)
			proc, err := newProcess(exe, path, cfg.Args, env, mtls.serverPEM, cfg.Started)
			clear(mtls.serverPEM)
			if proc != nil && cfg.Stdout != nil {
				proc.stdout = teeReadCloser{proc.stdout, io.TeeReader(proc.stdout, cfg.Stdout)}
			}
			p.proc = proc
			return proc, err
		},
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		// Mutual TLS as AutoMTLS negotiates it, on certificates made
		// here (mtls.go); a plugin that answers with a certificate of its
		// own in the handshake line is trusted with that one instead.
		TLSConfig: mtls.config,
		// go-plugin raises gRPC's receive limit to 2 GiB; this sets it
		// back (grpcClient also sets it per call).
		GRPCDialOptions: []grpc.DialOption{grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageBytes)),
			grpc.WithInitialWindowSize(windowBytes), grpc.WithInitialConnWindowSize(windowBytes)},
		Logger:       p.log,
		Stderr:       stderr,
		StartTimeout: cfg.StartTimeout,
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
	gc.logs = budget
	p.grpcClient = gc
	// The job stream opens now, so the first job finds it ready; a plugin
	// that does not serve it is given each job on a Run stream.
	ctx, cancel := context.WithTimeout(context.Background(), cfg.StartTimeout)
	defer cancel()
	gc.openJobStream(ctx)
	return p, nil
}

// teeReadCloser reads through r and closes c.
type teeReadCloser struct {
	c io.Closer
	r io.Reader
}

func (t teeReadCloser) Read(p []byte) (int, error) { return t.r.Read(p) }
func (t teeReadCloser) Close() error               { return t.c.Close() }

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
	p.closeJobs()
	p.client.Kill()
	if p.proc != nil {
		_ = p.proc.Kill(context.Background())
		<-p.proc.exited
	}
	p.log.reportDropped()
}

// KillNow kills the plugin's process group at once, without go-plugin's
// graceful shutdown (which waits up to 2s for a wedged plugin), then
// releases the client. It blocks until the process is gone and may be
// called more than once.
func (p *Plugin) KillNow() {
	if p.proc != nil {
		_ = p.proc.Kill(context.Background())
		<-p.proc.exited
	}
	p.stopJobs()
	p.client.Kill()
	p.log.reportDropped()
}

// goSignal finds the signal in a Go runtime crash line such as
// "SIGSEGV: segmentation violation" or "fatal error: unexpected signal".
var goSignal = regexp.MustCompile(`^(SIG[A-Z]+): `)

// outOfMemory matches a crash headline that says the process ran out of
// memory: the Go runtime's "fatal error: runtime: out of memory" and a C++
// "std::bad_alloc" left uncaught.
var outOfMemory = regexp.MustCompile(`out of memory|std::bad_alloc`)

// crashGrace is how long Run waits, after the stream broke, for the process
// to be reaped so the report can carry its exit status. A dead process
// closes its socket and is reaped within microseconds; the bound only
// matters for a plugin that closed its socket but lives on.
const crashGrace = 2 * time.Second

// Run runs a job on the plugin (see [Engine.Run]). When the plugin process
// dies mid-job, the returned *JobError is of kind ErrCrashed (or
// ErrOutOfMemory when the kernel's OOM killer acted in the plugin's memory
// cgroup meanwhile, or the plugin's last words say it ran out of memory) and
// carries the exit code or signal and the plugin's last stderr lines. When
// the stream broke but the process lives on (a broken transport), Run kills
// the process, which is of no further use, and reports a crash saying so.
func (p *Plugin) Run(ctx context.Context, req *RunRequest, ev Events) error {
	oomFile := p.oomFile()
	oomBefore, oomKnown := p.oomBaseline(oomFile)
	err := p.grpcClient.Run(ctx, req, ev)
	if !errors.Is(err, errBrokenStream) {
		return err
	}
	je := AsJobError(err)
	name := filepath.Base(p.path)
	lived := false
	grace := time.NewTimer(crashGrace)
	defer grace.Stop()
	select {
	case <-p.proc.exited:
		// The tail is complete once stderr reached its end (a helper the
		// plugin spawned may hold it open: bounded by the same grace).
		select {
		case <-p.proc.stderr.done:
		case <-grace.C:
		}
	case <-grace.C:
		lived = true
		_ = p.proc.Kill(context.Background())
		<-p.proc.exited
		p.Kill()
	}
	st := p.ExitStatus()
	je.ExitCode, je.Signal, je.StderrTail = st.Code, st.Signal, p.tail.CrashLines()
	if lived {
		je.Message = fmt.Sprintf("plugin %s: transport broke mid-job while the process lived on (%v); killed it", name, streamCause(je.Err))
		return je
	}
	if st.Signal == "" && st.Code == 0 {
		je.Message = fmt.Sprintf("plugin %s exited mid-job with code 0", name)
	} else {
		je.Message = fmt.Sprintf("plugin %s crashed mid-job: %s", name, st)
	}
	h := p.tail.Headline()
	if h != "" {
		// A Go plugin catches fatal signals itself, prints the cause and
		// exits with code 2; name the signal from its own words.
		if m := goSignal.FindStringSubmatch(h); m != nil && je.Signal == "" {
			je.Signal = m[1]
		}
		je.Message += ": " + h
	}
	if sig := p.tail.Signal(); je.Signal == "" && sig != "" {
		je.Signal = sig
	}
	if oomAfter, ok := oomKillCount(oomFile); st.Signal == "SIGKILL" && oomKnown && ok && oomAfter > oomBefore {
		je.Kind = ErrOutOfMemory
		je.Message = fmt.Sprintf("plugin %s was killed by the kernel's OOM killer mid-job (memory cgroup oom_kill %d -> %d)", name, oomBefore, oomAfter)
	} else if h != "" && outOfMemory.MatchString(h) {
		je.Kind = ErrOutOfMemory
		je.Message = fmt.Sprintf("plugin %s ran out of memory mid-job (%s): %s", name, st, h)
	}
	return je
}

// streamCause is the transport error behind a broken stream.
func streamCause(err error) error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if !errors.Is(e, errBrokenStream) {
				return e
			}
		}
	}
	return err
}
