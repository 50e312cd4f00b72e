package residency_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stokerhq/stoker/plugins/residency"
)

// clock is a fake clock that moves one second per reading.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

// model is a loaded value: its key's model id and identity.
type model struct{ id, identity string }

// lab is a set of models with a record of every load and free.
type lab struct {
	*residency.Set[*model]
	clock *clock

	mu     sync.Mutex
	loaded []string       // "id/identity" of each call of load, in order
	freed  []string       // "id/identity" of each free, in order
	frees  map[*model]int // frees per value, to catch double frees
}

func newLab(t testing.TB, o residency.Options) *lab {
	t.Helper()
	l := &lab{clock: &clock{t: time.Unix(1_000_000, 0)}, frees: map[*model]int{}}
	o.Now = l.clock.now
	l.Set = residency.New(l.free, o)
	t.Cleanup(func() {
		l.Close()
		l.mu.Lock()
		defer l.mu.Unlock()
		for m, n := range l.frees {
			if n != 1 {
				t.Errorf("%s/%s freed %d times, want once", m.id, m.identity, n)
			}
		}
	})
	return l
}

func (l *lab) free(m *model) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.freed = append(l.freed, m.id+"/"+m.identity)
	l.frees[m]++
}

func (l *lab) freedNames() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.freed)
}

func (l *lab) loadCalls() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.loaded)
}

// loader returns a load function for k whose value holds size bytes.
func (l *lab) loader(k residency.Key, size uint64) func(context.Context) (*model, uint64, error) {
	return func(context.Context) (*model, uint64, error) {
		l.mu.Lock()
		l.loaded = append(l.loaded, k.Model+"/"+k.Identity)
		l.mu.Unlock()
		return &model{id: k.Model, identity: k.Identity}, size, nil
	}
}

// acquire takes k (loading it, size bytes, if absent) and fails the test on
// error.
func (l *lab) acquire(t testing.TB, k residency.Key, size uint64) *residency.Handle[*model] {
	t.Helper()
	h, err := l.Acquire(context.Background(), k, l.loader(k, size))
	if err != nil {
		t.Fatalf("Acquire %v: %v", k, err)
	}
	if v := h.Value(); v.id != k.Model || v.identity != k.Identity {
		t.Fatalf("Acquire %v: got value %+v", k, v)
	}
	return h
}

// use runs one job on k: acquire, then release.
func (l *lab) use(t testing.TB, k residency.Key, size uint64) {
	t.Helper()
	l.acquire(t, k, size).Release()
}

// residentNames lists the resident models, most recently used first.
func (l *lab) residentNames() []string {
	var out []string
	for _, r := range l.Resident() {
		out = append(out, r.Model)
	}
	return out
}

func key(model string) residency.Key { return residency.Key{Model: model, Identity: model + ".bin"} }

func TestLoadsOnce(t *testing.T) {
	l := newLab(t, residency.Options{Budget: 100})
	for range 5 {
		l.use(t, key("a"), 10)
	}
	if got := l.Loads(); got != 1 {
		t.Errorf("Loads after five jobs: got %d, want 1", got)
	}
	if got := l.loadCalls(); got != 1 {
		t.Errorf("load calls after five jobs: got %d, want 1", got)
	}
	res := l.Resident()
	if len(res) != 1 || res[0].Model != "a" || res[0].Bytes != 10 {
		t.Fatalf("Resident: got %+v, want a with 10 bytes", res)
	}
	// The last use is the fifth Release: the clock's last reading.
	if got, want := res[0].LastUsedUnixMs, l.clock.t.UnixMilli(); got != want {
		t.Errorf("LastUsedUnixMs: got %d, want %d", got, want)
	}
	if got := l.freedNames(); len(got) != 0 {
		t.Errorf("freed %v while resident, want nothing", got)
	}
}

// step is one job in an eviction case: a use of model, whose load reports
// bytes; hold keeps it in use until the end of the case.
type step struct {
	model    string
	identity string // "" for model+".bin"
	bytes    uint64
	hold     bool
}

func TestEviction(t *testing.T) {
	tests := []struct {
		name      string
		opts      residency.Options
		steps     []step
		wantRes   []string // resident after the steps, most recent first
		wantFreed []string // in order
		wantLoads uint64
	}{
		{
			name:      "no limits keeps everything",
			steps:     []step{{model: "a", bytes: 10}, {model: "b", bytes: 10}, {model: "c", bytes: 10}},
			wantRes:   []string{"c", "b", "a"},
			wantLoads: 3,
		},
		{
			name:      "budget evicts the least recently used",
			opts:      residency.Options{Budget: 20},
			steps:     []step{{model: "a", bytes: 10}, {model: "b", bytes: 10}, {model: "a", bytes: 10}, {model: "c", bytes: 10}},
			wantRes:   []string{"c", "a"},
			wantFreed: []string{"b/b.bin"},
			wantLoads: 3,
		},
		{
			name:      "budget evicts as many as needed, oldest first",
			opts:      residency.Options{Budget: 30},
			steps:     []step{{model: "a", bytes: 10}, {model: "b", bytes: 10}, {model: "c", bytes: 10}, {model: "d", bytes: 25}},
			wantRes:   []string{"d"},
			wantFreed: []string{"a/a.bin", "b/b.bin", "c/c.bin"},
			wantLoads: 4,
		},
		{
			name:      "a value fitting exactly stays",
			opts:      residency.Options{Budget: 20},
			steps:     []step{{model: "a", bytes: 10}, {model: "b", bytes: 10}},
			wantRes:   []string{"b", "a"},
			wantLoads: 2,
		},
		{
			name:      "a value bigger than the budget stays alone",
			opts:      residency.Options{Budget: 20},
			steps:     []step{{model: "a", bytes: 10}, {model: "big", bytes: 50}},
			wantRes:   []string{"big"},
			wantFreed: []string{"a/a.bin"},
			wantLoads: 2,
		},
		{
			name:      "a value bigger than the budget is evicted by the next load",
			opts:      residency.Options{Budget: 20},
			steps:     []step{{model: "big", bytes: 50}, {model: "a", bytes: 10}},
			wantRes:   []string{"a"},
			wantFreed: []string{"big/big.bin"},
			wantLoads: 2,
		},
		{
			name:      "values in use are not evicted",
			opts:      residency.Options{Budget: 20},
			steps:     []step{{model: "a", bytes: 10, hold: true}, {model: "b", bytes: 10}, {model: "c", bytes: 10}},
			wantRes:   []string{"c", "a"},
			wantFreed: []string{"b/b.bin"},
			wantLoads: 3,
		},
		{
			name:      "over budget while everything is in use",
			opts:      residency.Options{Budget: 10},
			steps:     []step{{model: "a", bytes: 10, hold: true}, {model: "b", bytes: 10, hold: true}},
			wantRes:   []string{"b", "a"},
			wantLoads: 2,
		},
		{
			name:      "max models",
			opts:      residency.Options{MaxModels: 2},
			steps:     []step{{model: "a", bytes: 1}, {model: "b", bytes: 1}, {model: "a", bytes: 1}, {model: "c", bytes: 1}, {model: "d", bytes: 1}},
			wantRes:   []string{"d", "c"},
			wantFreed: []string{"b/b.bin", "a/a.bin"},
			wantLoads: 4,
		},
		{
			name:      "max models with zero-byte values",
			opts:      residency.Options{MaxModels: 1},
			steps:     []step{{model: "a"}, {model: "b"}, {model: "a"}},
			wantRes:   []string{"a"},
			wantFreed: []string{"a/a.bin", "b/b.bin"},
			wantLoads: 3,
		},
		{
			name:      "another identity is another value",
			steps:     []step{{model: "a", identity: "v1", bytes: 1}, {model: "a", identity: "v2", bytes: 1}, {model: "a", identity: "v1", bytes: 1}},
			wantRes:   []string{"a", "a"},
			wantLoads: 2,
		},
		{
			name:      "one copy per model replaces the other identity",
			opts:      residency.Options{OneCopyPerModel: true},
			steps:     []step{{model: "a", identity: "v1", bytes: 1}, {model: "b", bytes: 1}, {model: "a", identity: "v2", bytes: 1}},
			wantRes:   []string{"a", "b"},
			wantFreed: []string{"a/v1"},
			wantLoads: 3,
		},
		{
			name:      "one copy per model, the old copy in use",
			opts:      residency.Options{OneCopyPerModel: true},
			steps:     []step{{model: "a", identity: "v1", bytes: 1, hold: true}, {model: "a", identity: "v2", bytes: 1}},
			wantRes:   []string{"a"},
			wantLoads: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLab(t, tt.opts)
			var held []*residency.Handle[*model]
			for _, s := range tt.steps {
				k := key(s.model)
				if s.identity != "" {
					k.Identity = s.identity
				}
				h := l.acquire(t, k, s.bytes)
				if s.hold {
					held = append(held, h)
				} else {
					h.Release()
				}
			}
			if got := l.residentNames(); !slices.Equal(got, tt.wantRes) {
				t.Errorf("resident: got %v, want %v", got, tt.wantRes)
			}
			if got := l.freedNames(); !slices.Equal(got, tt.wantFreed) {
				t.Errorf("freed: got %v, want %v", got, tt.wantFreed)
			}
			if got := l.Loads(); got != tt.wantLoads {
				t.Errorf("Loads: got %d, want %d", got, tt.wantLoads)
			}
			for _, h := range held {
				h.Release()
			}
		})
	}
}

// TestFreedByLastRelease: a value removed while in use is freed by the last
// of its handles, and only then.
func TestFreedByLastRelease(t *testing.T) {
	tests := []struct {
		name    string
		opts    residency.Options
		remove  func(t testing.TB, l *lab)
		wantRes []string // right after the removal
	}{
		{"unload", residency.Options{}, func(t testing.TB, l *lab) { l.Unload("a") }, nil},
		{"close", residency.Options{}, func(t testing.TB, l *lab) { l.Close() }, nil},
		{"replaced by another identity", residency.Options{OneCopyPerModel: true}, func(t testing.TB, l *lab) {
			l.use(t, residency.Key{Model: "a", Identity: "v2"}, 1)
		}, []string{"a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLab(t, tt.opts)
			k := residency.Key{Model: "a", Identity: "v1"}
			h1 := l.acquire(t, k, 1)
			h2 := l.acquire(t, k, 1)
			tt.remove(t, l)
			if got := l.residentNames(); !slices.Equal(got, tt.wantRes) {
				t.Errorf("resident after removal: got %v, want %v", got, tt.wantRes)
			}
			h1.Release()
			if got := l.freedNames(); slices.Contains(got, "a/v1") {
				t.Fatalf("freed %v with a handle left, want a/v1 kept", got)
			}
			if v := h2.Value(); v.identity != "v1" {
				t.Fatalf("value of the remaining handle: got %+v, want a/v1", v)
			}
			h2.Release()
			if got := l.freedNames(); !slices.Contains(got, "a/v1") {
				t.Errorf("freed %v after the last Release, want a/v1", got)
			}
			h2.Release() // a second Release does nothing
		})
	}
}

// TestUnload: every identity of the model goes, idle ones at once; other
// models stay; a model that is not resident is fine.
func TestUnload(t *testing.T) {
	l := newLab(t, residency.Options{})
	l.use(t, residency.Key{Model: "a", Identity: "v1"}, 1)
	l.use(t, residency.Key{Model: "a", Identity: "v2"}, 1)
	l.use(t, key("b"), 1)
	l.Unload("not-resident")
	l.Unload("a")
	l.Unload("a")
	if got, want := l.residentNames(), []string{"b"}; !slices.Equal(got, want) {
		t.Errorf("resident: got %v, want %v", got, want)
	}
	got := l.freedNames()
	slices.Sort(got)
	if want := []string{"a/v1", "a/v2"}; !slices.Equal(got, want) {
		t.Errorf("freed: got %v, want %v", got, want)
	}
	l.use(t, residency.Key{Model: "a", Identity: "v1"}, 1)
	if got := l.Loads(); got != 4 {
		t.Errorf("Loads after unloading and using again: got %d, want 4", got)
	}
}

func TestClose(t *testing.T) {
	l := newLab(t, residency.Options{})
	l.use(t, key("a"), 1)
	l.use(t, key("b"), 1)
	l.Close()
	l.Close()
	if got := l.Resident(); len(got) != 0 {
		t.Errorf("resident after Close: got %+v, want none", got)
	}
	if got := l.freedNames(); len(got) != 2 {
		t.Errorf("freed after Close: got %v, want a and b", got)
	}
	_, err := l.Acquire(context.Background(), key("a"), l.loader(key("a"), 1))
	if !errors.Is(err, residency.ErrClosed) {
		t.Errorf("Acquire after Close: got %v, want ErrClosed", err)
	}
}

// TestCloseDuringLoad: a load that ends after Close gives its value to its
// caller, leaves it out of the set, and the Release frees it.
func TestCloseDuringLoad(t *testing.T) {
	l := newLab(t, residency.Options{})
	h, err := l.Acquire(context.Background(), key("a"), func(ctx context.Context) (*model, uint64, error) {
		l.Close()
		return &model{id: "a"}, 1, nil
	})
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	if got := l.Resident(); len(got) != 0 {
		t.Errorf("resident: got %+v, want none", got)
	}
	if got := l.freedNames(); len(got) != 0 {
		t.Fatalf("freed %v before Release", got)
	}
	h.Release()
	if got := l.freedNames(); !slices.Equal(got, []string{"a/"}) {
		t.Errorf("freed: got %v, want a/", got)
	}
}

func TestFailingLoad(t *testing.T) {
	l := newLab(t, residency.Options{})
	boom := errors.New("boom")
	_, err := l.Acquire(context.Background(), key("a"), func(context.Context) (*model, uint64, error) {
		return nil, 0, boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Acquire: got %v, want the load's error", err)
	}
	if got := l.Resident(); len(got) != 0 {
		t.Errorf("resident after a failed load: got %+v, want none", got)
	}
	if got := l.Loads(); got != 0 {
		t.Errorf("Loads after a failed load: got %d, want 0", got)
	}
	l.use(t, key("a"), 1)
	if got := l.Loads(); got != 1 {
		t.Errorf("Loads after a good load: got %d, want 1", got)
	}
}

func TestSetBudget(t *testing.T) {
	l := newLab(t, residency.Options{})
	l.use(t, key("a"), 10)
	l.use(t, key("b"), 10)
	l.SetBudget(10)
	if got, want := l.residentNames(), []string{"b", "a"}; !slices.Equal(got, want) {
		t.Errorf("resident right after SetBudget: got %v, want %v (nothing evicted until a load)", got, want)
	}
	l.use(t, key("a"), 10) // resident: no load, no eviction
	l.use(t, key("c"), 10)
	if got, want := l.residentNames(), []string{"c"}; !slices.Equal(got, want) {
		t.Errorf("resident after a load: got %v, want %v", got, want)
	}
	if got, want := l.freedNames(), []string{"b/b.bin", "a/a.bin"}; !slices.Equal(got, want) {
		t.Errorf("freed: got %v, want %v", got, want)
	}
}

// TestConcurrentAcquire: many jobs on one model at once load it once and
// share it.
func TestConcurrentAcquire(t *testing.T) {
	l := newLab(t, residency.Options{Budget: 100})
	const n = 16
	var wg sync.WaitGroup
	handles := make([]*residency.Handle[*model], n)
	errs := make([]error, n)
	for i := range n {
		k := key("a")
		if i%4 == 3 {
			k = key("b")
		}
		wg.Go(func() {
			handles[i], errs[i] = l.Acquire(context.Background(), k, l.loader(k, 10))
		})
	}
	wg.Wait()
	values := map[*model]bool{}
	for i, h := range handles {
		if errs[i] != nil {
			t.Fatalf("Acquire %d: %v", i, errs[i])
		}
		values[h.Value()] = true
	}
	if len(values) != 2 {
		t.Errorf("distinct values: got %d, want 2 (one per key)", len(values))
	}
	if got := l.Loads(); got != 2 {
		t.Errorf("Loads: got %d, want 2", got)
	}
	if got := l.loadCalls(); got != 2 {
		t.Errorf("load calls: got %d, want 2", got)
	}
	for _, h := range handles {
		wg.Go(h.Release)
	}
	wg.Wait()
	if got := l.freedNames(); len(got) != 0 {
		t.Errorf("freed %v, want nothing (both resident)", got)
	}
	if got := l.Resident(); len(got) != 2 {
		t.Errorf("resident: got %+v, want a and b", got)
	}
}

// TestWaitForLoad: an Acquire of a key being loaded waits for that load,
// gives up when its context ends, and loads itself when that load fails.
func TestWaitForLoad(t *testing.T) {
	l := newLab(t, residency.Options{})
	started, proceed := make(chan struct{}), make(chan error)
	type result struct {
		h   *residency.Handle[*model]
		err error
	}
	first := make(chan result, 1)
	go func() {
		h, err := l.Acquire(context.Background(), key("a"), func(context.Context) (*model, uint64, error) {
			close(started)
			if err := <-proceed; err != nil {
				return nil, 0, err
			}
			return &model{id: "a", identity: "a.bin"}, 1, nil
		})
		first <- result{h, err}
	}()
	<-started

	// A waiter whose context is already done gives up without loading.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := l.Acquire(ctx, key("a"), l.loader(key("a"), 1))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Acquire with a done context while loading: got %v, want context.Canceled", err)
	}
	if got := l.loadCalls(); got != 0 {
		t.Errorf("load calls of the waiter: got %d, want 0", got)
	}

	// The first load fails: a waiter loads itself, whenever it came.
	second := make(chan result, 1)
	go func() {
		h, err := l.Acquire(context.Background(), key("a"), l.loader(key("a"), 1))
		second <- result{h, err}
	}()
	proceed <- fmt.Errorf("first load fails")
	if r := <-first; r.err == nil {
		t.Errorf("first Acquire: got nil error, want its load's")
	}
	r := <-second
	if r.err != nil {
		t.Fatalf("second Acquire: %v", r.err)
	}
	r.h.Release()
	if got := l.Loads(); got != 1 {
		t.Errorf("Loads: got %d, want 1", got)
	}
}

// TestEvictionLog: each eviction is logged with the model and its bytes;
// unloading is not an eviction.
func TestEvictionLog(t *testing.T) {
	var buf bytes.Buffer
	log := hclog.New(&hclog.LoggerOptions{Output: &buf, JSONFormat: true, Level: hclog.Info})
	l := newLab(t, residency.Options{MaxModels: 1, Logger: log})
	l.use(t, key("a"), 7)
	l.use(t, key("b"), 1)
	l.Unload("b")
	var got []map[string]any
	dec := json.NewDecoder(&buf)
	for dec.More() {
		var line map[string]any
		if err := dec.Decode(&line); err != nil {
			t.Fatal(err)
		}
		got = append(got, line)
	}
	if len(got) != 1 || got[0]["@message"] != "model evicted" || got[0]["model"] != "a" || got[0]["bytes"] != 7.0 {
		t.Errorf("log: got %v, want one \"model evicted\" line for a, 7 bytes", got)
	}
}
