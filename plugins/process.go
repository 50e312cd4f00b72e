package plugins

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-plugin/runner"
)

// ExitStatus is how a plugin process ended.
type ExitStatus struct {
	// Code is the exit code, or -1 when the process was killed by a signal.
	Code int
	// Signal names the signal that killed the process ("SIGSEGV"), or "".
	Signal string
	// Err is the wait error as os/exec reported it.
	Err error
	// At is when the supervisor reaped the process: the moment of death
	// as near as the host can tell.
	At time.Time
}

func (s ExitStatus) String() string {
	if s.Signal != "" {
		return "killed by " + s.Signal
	}
	return "exited with code " + strconv.Itoa(s.Code)
}

// process is a go-plugin runner that starts the plugin in its own process
// group with a parent-death signal (see proc_linux.go), kills the whole
// group, and tells the host the moment the process is gone and how it
// ended. go-plugin's own runner offers neither.
type process struct {
	cmd     *exec.Cmd
	path    string // the executable's name (cmd.Path may be /proc/self/fd/N)
	stdout  io.ReadCloser
	stderr  *eofReader
	stderrW *os.File      // the child's end, closed here once it started
	tlsR    *os.File      // the child's TLS pair (or nil), closed here once it started
	exited  chan struct{} // closed once Wait has returned
	// started, if set, is told the pid as soon as the process exists.
	started func(pid int)

	mu     sync.Mutex // guards status
	status ExitStatus
}

var _ runner.Runner = (*process)(nil)

// newProcess prepares the plugin process: the open executable exe (whose
// name is path) with args and exactly env as its environment, stdin on
// /dev/null and no descriptor of ours but its stdout and stderr pipes, and,
// when tlsPair is set, a pipe holding it (its descriptor in EnvTLSFD).
func newProcess(exe *os.File, path string, args []string, env []string, tlsPair []byte, started func(pid int)) (*process, error) {
	cmd := &exec.Cmd{Path: path, Args: append([]string{path}, args...), Env: env, SysProcAttr: sysProcAttr()}
	execFile(cmd, exe)
	var tlsR *os.File
	if tlsPair != nil {
		var err error
		if tlsR, err = pipeWith(tlsPair); err != nil {
			return nil, fmt.Errorf("pass the TLS pair: %w", err)
		}
		cmd.ExtraFiles = append(cmd.ExtraFiles, tlsR)
		cmd.Env = append(cmd.Env, EnvTLSFD+"="+strconv.Itoa(2+len(cmd.ExtraFiles)))
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		closeFile(tlsR)
		return nil, err
	}
	// Not cmd.StderrPipe: Wait closes that pipe as soon as the process is
	// reaped, which can drop the last lines a crashing plugin wrote, the
	// very lines a crash report needs. Our own pipe is read to its end.
	r, w, err := os.Pipe()
	if err != nil {
		stdout.Close()
		closeFile(tlsR)
		return nil, err
	}
	cmd.Stderr = w
	return &process{
		cmd: cmd, path: path, stdout: stdout, stderrW: w, tlsR: tlsR, exited: make(chan struct{}), started: started,
		stderr: &eofReader{r: r, done: make(chan struct{})},
	}, nil
}

func closeFile(f *os.File) {
	if f != nil {
		f.Close()
	}
}

func (p *process) Start(context.Context) error {
	// A descriptor the supervisor inherited without close-on-exec would
	// pass to the plugin; mark them all before the fork.
	closeInheritedOnExec()
	err := p.cmd.Start()
	p.stderrW.Close() // the child holds its own copy
	closeFile(p.tlsR) // and of this one
	if err != nil {
		p.stderr.Close()
		return err
	}
	if p.started != nil {
		p.started(p.cmd.Process.Pid)
	}
	return nil
}

func (p *process) Wait(context.Context) error {
	err := p.cmd.Wait()
	st := ExitStatus{Code: -1, Err: err, At: time.Now()}
	if ps := p.cmd.ProcessState; ps != nil {
		st.Code = ps.ExitCode()
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			st.Signal = signalName(ws.Signal())
		}
	}
	p.mu.Lock()
	p.status = st
	p.mu.Unlock()
	close(p.exited)
	return err
}

// Kill kills the plugin's whole process group, so helpers it spawned die
// with it. Calling it more than once is fine.
func (p *process) Kill(context.Context) error {
	if p.cmd.Process == nil {
		return nil
	}
	if err := killGroup(p.cmd.Process.Pid); err != nil && !errors.Is(err, os.ErrProcessDone) && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill plugin %d: %w", p.cmd.Process.Pid, err)
	}
	return nil
}

func (p *process) exitStatus() ExitStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

func (p *process) Stdout() io.ReadCloser { return p.stdout }
func (p *process) Stderr() io.ReadCloser { return p.stderr }
func (p *process) Name() string          { return p.path }

func (p *process) ID() string {
	if p.cmd.Process == nil {
		return ""
	}
	return strconv.Itoa(p.cmd.Process.Pid)
}

func (p *process) Diagnose(context.Context) string {
	return "the plugin may be built for another architecture, miss a shared library, lack the execute bit, or not speak the stoker handshake; run it by hand to see its own message"
}

func (p *process) PluginToHost(network, addr string) (string, string, error) {
	return network, addr, nil
}

func (p *process) HostToPlugin(network, addr string) (string, string, error) {
	return network, addr, nil
}

func signalName(s syscall.Signal) string {
	switch s {
	case syscall.SIGSEGV:
		return "SIGSEGV"
	case syscall.SIGABRT:
		return "SIGABRT"
	case syscall.SIGKILL:
		return "SIGKILL"
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGBUS:
		return "SIGBUS"
	case syscall.SIGILL:
		return "SIGILL"
	case syscall.SIGFPE:
		return "SIGFPE"
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGQUIT:
		return "SIGQUIT"
	case syscall.SIGTRAP:
		return "SIGTRAP"
	}
	return "signal " + strconv.Itoa(int(s))
}

// eofReader is the plugin's stderr; done is closed once a read has seen
// the end (every process holding the pipe is gone) or it was closed, so
// the host knows every line has gone through to the tail.
type eofReader struct {
	r    *os.File
	once sync.Once
	done chan struct{}
}

func (e *eofReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil {
		e.once.Do(func() { close(e.done) })
	}
	return n, err
}

func (e *eofReader) Close() error {
	e.once.Do(func() { close(e.done) })
	return e.r.Close()
}
