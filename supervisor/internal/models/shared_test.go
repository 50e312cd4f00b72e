package models

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv("MODELS_TEST_HELPER") == "fetch" {
		os.Exit(helperFetch())
	}
	goleak.VerifyTestMain(m)
}

// helperFetch is a second process sharing a cache: it fetches one file and
// prints its path. Its log goes to stderr.
func helperFetch() int {
	s, err := Open(Config{Root: os.Getenv("MODELS_ROOT"), Logger: stderrLogger(), Allow: testLoopback})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got, err := s.Fetch(ctx, "shared", []File{{URL: os.Getenv("MODELS_URL"), Filename: "w.gguf", SHA256: os.Getenv("MODELS_SHA")}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(got[0].Path)
	return 0
}

// gate is a handler that serves b once released, and reports each request.
type gate struct {
	b       []byte
	arrived chan struct{}
	release chan struct{}
}

func newGate(b []byte) *gate {
	return &gate{b: b, arrived: make(chan struct{}, 100), release: make(chan struct{})}
}

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.arrived <- struct{}{}
	select {
	case <-g.release:
	case <-r.Context().Done():
		return
	}
	serveContent(g.b)(w, r)
}

func TestFetchSingleFlightInProcess(t *testing.T) {
	data := randomBytes(1<<20, 12)
	o := newOrigin(t)
	g := newGate(data)
	o.mux.Handle("/w.gguf", g)
	s := openStore(t, testConfig(t))
	f := File{URL: o.URL + "/w.gguf", Filename: "w.gguf", SHA256: sha(data)}

	const jobs = 8
	var wg sync.WaitGroup
	paths := make([]string, jobs)
	errs := make([]error, jobs)
	for i := range jobs {
		wg.Go(func() {
			var got []Local
			got, errs[i] = s.Fetch(context.Background(), "m", []File{f})
			if errs[i] == nil {
				paths[i] = got[0].Path
			}
		})
	}
	waitChan(t, g.arrived, "the leader's request") // held at the server
	dst := filepath.Join(s.Root(), "m", "w.gguf")
	waitFor(t, 10*time.Second, "7 callers waiting on the download", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		fl := s.flights[dst]
		return fl != nil && fl.waiters == jobs-1
	})
	close(g.release)
	wg.Wait()
	for i := range jobs {
		if errs[i] != nil || paths[i] != dst {
			t.Errorf("job %d: got (%s, %v), want (%s, nil)", i, paths[i], errs[i], dst)
		}
	}
	if got := len(o.requests("/w.gguf")); got != 1 {
		t.Errorf("GETs: got %d, want 1", got)
	}
}

func TestFetchSharedAcrossProcesses(t *testing.T) {
	data := randomBytes(1<<20, 13)
	o := newOrigin(t)
	g := newGate(data)
	o.mux.Handle("/w.gguf", g)
	root := t.TempDir()

	const procs = 3
	type child struct {
		cmd *exec.Cmd
		out strings.Builder
	}
	waiting := make(chan struct{}, procs)
	var readers sync.WaitGroup
	children := make([]*child, procs)
	for i := range children {
		c := &child{cmd: exec.Command(os.Args[0], "-test.run=^$")}
		c.cmd.Env = append(os.Environ(), "MODELS_TEST_HELPER=fetch", "MODELS_ROOT="+root,
			"MODELS_URL="+o.URL+"/w.gguf", "MODELS_SHA="+sha(data))
		c.cmd.Stdout = &c.out
		stderr, err := c.cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := c.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if c.cmd.ProcessState == nil {
				c.cmd.Process.Kill()
			}
		})
		readers.Go(func() {
			sc := bufio.NewScanner(stderr)
			for sc.Scan() {
				if strings.Contains(sc.Text(), "waiting for another process to finish the file") {
					waiting <- struct{}{}
				}
			}
		})
		children[i] = c
	}
	// One child's request is held at the server; the other two must be
	// waiting on its lock.
	waitChan(t, g.arrived, "a child's request")
	for range procs - 1 {
		waitChan(t, waiting, "a second process waiting on the lock")
	}
	close(g.release)
	readers.Wait()
	want := filepath.Join(root, "shared", "w.gguf")
	for i, c := range children {
		if err := c.cmd.Wait(); err != nil {
			t.Errorf("child %d: %v", i, err)
		}
		if got := strings.TrimSpace(c.out.String()); got != want {
			t.Errorf("child %d printed %q, want %q", i, got, want)
		}
	}
	if got := len(o.requests("/w.gguf")); got != 1 {
		t.Errorf("GETs: got %d, want 1", got)
	}
}

// waitFor polls cond until it holds or d passes; where no event exists to
// wait on.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitChan waits for a value on ch, failing the test after 30 s.
func waitChan(t testing.TB, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func TestWaiterTakesOverWhenLeaderIsCancelled(t *testing.T) {
	data := randomBytes(1<<20, 14)
	o := newOrigin(t)
	g := newGate(data)
	o.mux.Handle("/w.gguf", g)
	s := openStore(t, testConfig(t))
	f := File{URL: o.URL + "/w.gguf", Filename: "w.gguf", SHA256: sha(data)}

	leaderCtx, cancelLeader := context.WithCancel(context.Background())
	leaderErr := make(chan error, 1)
	go func() {
		_, err := s.Fetch(leaderCtx, "m", []File{f})
		leaderErr <- err
	}()
	waitChan(t, g.arrived, "the leader's request")

	type result struct {
		got []Local
		err error
	}
	waiter := make(chan result, 1)
	go func() {
		got, err := s.Fetch(context.Background(), "m", []File{f})
		waiter <- result{got, err}
	}()
	dst := filepath.Join(s.Root(), "m", "w.gguf")
	waitFor(t, 10*time.Second, "a caller waiting on the download", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		fl := s.flights[dst]
		return fl != nil && fl.waiters == 1
	})
	cancelLeader() // the leader's job is cancelled
	if err := <-leaderErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("leader: got %v, want context.Canceled", err)
	}
	waitChan(t, g.arrived, "the waiter's own request")
	close(g.release)
	r := <-waiter
	if r.err != nil || r.got[0].Path != dst {
		t.Fatalf("waiter: got (%v, %v), want (%s, nil)", r.got, r.err, dst)
	}
}

func TestFetchOverallTimeout(t *testing.T) {
	o := newOrigin(t)
	o.mux.HandleFunc("/w.gguf", func(w http.ResponseWriter, r *http.Request) {
		// A trickle: never idle long enough to stall, never done.
		w.Header().Set("Content-Length", "1000000")
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
				w.Write([]byte{'x'})
				w.(http.Flusher).Flush()
			}
		}
	})
	cfg := testConfig(t)
	cfg.ModelTimeout = 300 * time.Millisecond
	cfg.IdleTimeout = 5 * time.Second
	s := openStore(t, cfg)
	_, err := s.Fetch(context.Background(), "m", []File{{URL: o.URL + "/w.gguf", Filename: "w.gguf"}})
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrStalled) {
		t.Fatalf("Fetch: got %v, want the overall deadline", err)
	}
	var merr *Error
	if !errors.As(err, &merr) || !merr.Retryable() {
		t.Errorf("Fetch: got %v, want a retryable *Error", err)
	}
	if got := cacheFiles(t, s.Root()); len(got) != 0 {
		t.Errorf("cache after failure: got %q, want nothing", got)
	}
	t.Logf("error: %v", err)
}
