package jobslot

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

func TestTryAcquireWhileHeld(t *testing.T) {
	s := New(1)
	if !s.TryAcquire(Studio) {
		t.Fatal("TryAcquire of a free slot failed")
	}
	if s.TryAcquire(Studio) {
		t.Fatal("second TryAcquire succeeded while the slot is held")
	}
	if got := s.State().Holder; got != Studio {
		t.Fatalf("holder: got %q, want %q", got, Studio)
	}
	s.Release()
	if got := s.State().Holder; got != "" {
		t.Fatalf("holder after release: got %q, want none", got)
	}
}

// TestReleaseHandsToWaiter: a waiting local request gets the slot the
// moment it is released, before a studio offer can take it.
func TestReleaseHandsToWaiter(t *testing.T) {
	s := New(2)
	if !s.TryAcquire(Studio) {
		t.Fatal("TryAcquire failed")
	}
	got := make(chan error, 1)
	go func() { got <- s.Acquire(context.Background(), Local) }()
	waitFor(t, s, func(st State) bool { return st.Waiting == 1 })
	if s.TryAcquire(Studio) {
		t.Fatal("TryAcquire succeeded while a request waits")
	}
	s.Release()
	if err := <-got; err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	if st := s.State(); st.Holder != Local || st.Waiting != 0 || st.Waited != 1 {
		t.Fatalf("state: got %+v, want held by local, none waiting, 1 waited", st)
	}
	if s.TryAcquire(Studio) {
		t.Fatal("TryAcquire succeeded while the local request holds the slot")
	}
	s.Release()
	if !s.TryAcquire(Studio) {
		t.Fatal("TryAcquire of a free slot failed")
	}
	s.Release()
}

func TestQueueFull(t *testing.T) {
	s := New(1)
	if err := s.Acquire(context.Background(), Local); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan error, 1)
	go func() { got <- s.Acquire(ctx, Local) }()
	waitFor(t, s, func(st State) bool { return st.Waiting == 1 })
	if err := s.Acquire(context.Background(), Local); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("Acquire with a full queue: got %v, want ErrQueueFull", err)
	}
	cancel()
	if err := <-got; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Acquire: got %v, want context.Canceled", err)
	}
	if st := s.State(); st.Waiting != 0 || st.Holder != Local {
		t.Fatalf("state after the waiter left: %+v", st)
	}
	s.Release()
	if st := s.State(); st.Holder != "" {
		t.Fatalf("state after release: %+v", st)
	}
}

func TestNoQueue(t *testing.T) {
	s := New(0)
	if !s.TryAcquire(Studio) {
		t.Fatal("TryAcquire failed")
	}
	if err := s.Acquire(context.Background(), Local); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("got %v, want ErrQueueFull", err)
	}
	s.Release()
}

func TestReleaseFreePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("Release of a free slot did not panic")
		}
	}()
	New(1).Release()
}

// TestNeverTwoHolders: studio offers and local requests from many
// goroutines never hold the slot together, and every local request is
// served.
func TestNeverTwoHolders(t *testing.T) {
	s := New(64)
	var inside, most atomic.Int32
	enter := func() {
		n := inside.Add(1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		inside.Add(-1)
	}
	var wg sync.WaitGroup
	var served atomic.Int32
	for range 16 {
		wg.Go(func() {
			for range 200 {
				if s.TryAcquire(Studio) {
					enter()
					s.Release()
				}
			}
		})
		wg.Go(func() {
			for range 20 {
				if err := s.Acquire(context.Background(), Local); err != nil {
					t.Error(err)
					return
				}
				enter()
				served.Add(1)
				s.Release()
			}
		})
	}
	wg.Wait()
	if m := most.Load(); m != 1 {
		t.Fatalf("most holders at once: got %d, want 1", m)
	}
	if n := served.Load(); n != 16*20 {
		t.Fatalf("local requests served: got %d, want %d", n, 16*20)
	}
}

func waitFor(t *testing.T, s *Slot, cond func(State) bool) {
	t.Helper()
	for range 1_000_000 {
		if cond(s.State()) {
			return
		}
		// Yield to the goroutine under test; no timer involved.
		runtime.Gosched()
	}
	t.Fatalf("condition never met: %+v", s.State())
}
