// Package childproc runs a program that a test or a driver watches (a
// `stoker agent` or `stoker studio` process in the fleet, stress and
// hostile-peer runs): each line of its stderr is handed to a callback as
// it comes, its exit is awaited on the one goroutine that reads it, and a
// stop signals it, then kills it after a grace period.
package childproc

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// MaxLine bounds one stderr line handed to the callback. A longer line
// ends the reading of lines; the rest of stderr is drained unread.
const MaxLine = 64 << 20

// Proc is one started program. Create it with Start.
type Proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once it has exited and its stderr is read

	mu  sync.Mutex // guards err
	err error
}

// Start starts cmd. Each line of its stderr goes to line, and its exit to
// exited (either may be nil), both on the goroutine that reads stderr,
// which ends with the process: exited is called before Done is closed.
func Start(cmd *exec.Cmd, line func([]byte), exited func(error)) (*Proc, error) {
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), MaxLine)
		for sc.Scan() {
			if line != nil {
				line(sc.Bytes())
			}
		}
		io.Copy(io.Discard, stderr)
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		if exited != nil {
			exited(err)
		}
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is how the process exited, once Done is closed (nil before).
func (p *Proc) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Stop sends sig (an agent drains on SIGINT or SIGTERM) and waits for the
// exit, killing the process after grace. It returns how it exited, and may
// be called more than once.
func (p *Proc) Stop(sig os.Signal, grace time.Duration) error {
	select {
	case <-p.done:
		return p.Err()
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	return p.Err()
}

// RSS is the resident memory of process pid in bytes (VmRSS in
// /proc/<pid>/status).
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for l := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/%d/status: VmRSS %q: %w", pid, strings.TrimSpace(v), err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}
