package childproc

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestLinesAndExit(t *testing.T) {
	var (
		mu     sync.Mutex
		lines  []string
		exitOK bool
	)
	p, err := Start(exec.Command("sh", "-c", "echo one >&2; echo two >&2; echo out; exit 3"),
		func(b []byte) {
			mu.Lock()
			lines = append(lines, string(b))
			mu.Unlock()
		},
		func(err error) {
			var ee *exec.ExitError
			mu.Lock()
			exitOK = errors.As(err, &ee) && ee.ExitCode() == 3
			mu.Unlock()
		})
	if err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(lines, "|") != "one|two" {
		t.Errorf("stderr lines %q, want one and two (stdout is not read)", lines)
	}
	if !exitOK {
		t.Errorf("exited was not told exit status 3 before Done")
	}
	if err := p.Err(); err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("Err = %v, want exit status 3", err)
	}
	if err := p.Stop(syscall.SIGTERM, time.Second); err == nil {
		t.Errorf("Stop after the exit = nil, want the exit")
	}
}

func TestStopSignalsThenKills(t *testing.T) {
	// Takes SIGTERM: ends at once.
	p, err := Start(exec.Command("sleep", "60"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(syscall.SIGTERM, time.Minute); err == nil || !strings.Contains(err.Error(), "terminated") {
		t.Errorf("Stop = %v, want terminated by SIGTERM", err)
	}
	// Ignores SIGTERM: killed once the grace is over. The shell says when
	// its trap is set, so the signal cannot come before it.
	ready := make(chan struct{})
	var once sync.Once
	p, err = Start(exec.Command("sh", "-c", `trap "" TERM; echo ready >&2; while :; do sleep 1; done`),
		func(b []byte) {
			if string(b) == "ready" {
				once.Do(func() { close(ready) })
			}
		}, nil)
	if err != nil {
		t.Fatal(err)
	}
	<-ready
	if err := p.Stop(syscall.SIGTERM, 50*time.Millisecond); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("Stop = %v, want killed after the grace", err)
	}
}

func TestLineOverTheBound(t *testing.T) {
	// A line over MaxLine ends the reading of lines; the process still
	// exits and is reaped.
	n := 0
	p, err := Start(exec.Command("sh", "-c", "head -c 70000000 /dev/zero | tr '\\0' a >&2; echo >&2; echo after >&2"),
		func([]byte) { n++ }, nil)
	if err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	if n != 0 {
		t.Errorf("%d lines handed on, want none once a line was over the bound", n)
	}
	if err := p.Err(); err != nil {
		t.Errorf("Err = %v, want a clean exit", err)
	}
}

func TestRSS(t *testing.T) {
	n, err := RSS(os.Getpid())
	if err != nil || n < 1<<20 {
		t.Errorf("RSS of this process = %d, %v; want over 1 MiB", n, err)
	}
	if _, err := RSS(-1); err == nil {
		t.Errorf("RSS(-1) = nil error")
	}
}
