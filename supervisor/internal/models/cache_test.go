package models

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// cacheFixture serves 1000-byte files at /<name> and fetches them into
// model dir m<name>.
type cacheFixture struct {
	t *testing.T
	o *origin
	s *Store
}

func newCacheFixture(t *testing.T, maxBytes int64) *cacheFixture {
	o := newOrigin(t)
	for i, n := range []string{"a", "b", "c", "d", "e"} {
		o.serveBytes("/"+n, randomBytes(1000, uint64(100+i)))
	}
	cfg := testConfig(t)
	cfg.MaxBytes = maxBytes
	return &cacheFixture{t: t, o: o, s: openStore(t, cfg)}
}

func (c *cacheFixture) file(n string) File {
	return File{URL: c.o.URL + "/" + n, Filename: n + ".bin", ApproxBytes: 1000}
}

func (c *cacheFixture) path(n string) string {
	return filepath.Join(c.s.Root(), "m"+n, n+".bin")
}

func (c *cacheFixture) acquire(n string) *Lease {
	c.t.Helper()
	_, lease, err := c.s.Acquire(context.Background(), "m"+n, []File{c.file(n)})
	if err != nil {
		c.t.Fatalf("Acquire %s: %v", n, err)
	}
	return lease
}

func (c *cacheFixture) fetch(n string) {
	c.t.Helper()
	c.acquire(n).Release()
}

// used sets n's last-used time.
func (c *cacheFixture) used(n string, at time.Time) {
	c.t.Helper()
	if err := os.Chtimes(c.path(n), at, time.Time{}); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cacheFixture) present(names ...string) map[string]bool {
	got := make(map[string]bool)
	for _, n := range names {
		_, err := os.Stat(c.path(n))
		got[n] = err == nil
	}
	return got
}

func TestLRUEvictionSparesFilesInUse(t *testing.T) {
	c := newCacheFixture(t, 3000)
	base := time.Now().Add(-time.Hour)

	leaseA := c.acquire("a") // a running job uses a
	c.fetch("b")
	c.fetch("c")
	c.used("a", base) // a is the least recently used, yet in use
	c.used("b", base.Add(time.Minute))
	c.used("c", base.Add(2*time.Minute))

	c.fetch("d") // over the cap: b goes, a stays
	want := map[string]bool{"a": true, "b": false, "c": true, "d": true}
	if got := c.present("a", "b", "c", "d"); !equalMaps(got, want) {
		t.Fatalf("after fetching d: got %v, want %v", got, want)
	}

	leaseA.Release()
	leaseA.Release() // twice is fine
	c.used("c", base.Add(3*time.Minute))
	c.fetch("e") // a is free now and the oldest
	want = map[string]bool{"a": false, "c": true, "d": true, "e": true}
	if got := c.present("a", "c", "d", "e"); !equalMaps(got, want) {
		t.Fatalf("after fetching e: got %v, want %v", got, want)
	}
}

func TestLRUEvictionWithEverythingInUse(t *testing.T) {
	c := newCacheFixture(t, 1500)
	la := c.acquire("a")
	defer la.Release()
	lb := c.acquire("b") // over the cap, but nothing may go
	defer lb.Release()
	want := map[string]bool{"a": true, "b": true}
	if got := c.present("a", "b"); !equalMaps(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestListAndPrune(t *testing.T) {
	c := newCacheFixture(t, 0)
	now := time.Now()
	lease := c.acquire("a")
	defer lease.Release()
	c.fetch("b")
	c.fetch("c")
	c.used("a", now.Add(-72*time.Hour))
	c.used("b", now.Add(-48*time.Hour))
	c.used("c", now.Add(-time.Hour))
	root := c.s.Root()
	os.WriteFile(filepath.Join(root, "legacy.gguf"), make([]byte, 50), 0o644)
	os.WriteFile(filepath.Join(root, "mc", "d.bin.part"), make([]byte, 10), 0o644)

	ents, err := c.s.List()
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		Model, Name            string
		Size                   int64
		Partial, Legacy, InUse bool
	}
	want := []row{
		{"", "legacy.gguf", 50, false, true, false},
		{"ma", "a.bin", 1000, false, false, true},
		{"mb", "b.bin", 1000, false, false, false},
		{"mc", "c.bin", 1000, false, false, false},
		{"mc", "d.bin.part", 10, true, false, false},
	}
	if len(ents) != len(want) {
		t.Fatalf("List: got %d entries %+v, want %d", len(ents), ents, len(want))
	}
	for i, e := range ents {
		if got := (row{e.Model, e.Name, e.Size, e.Partial, e.Legacy, e.InUse}); got != want[i] {
			t.Errorf("List[%d]: got %+v, want %+v", i, got, want[i])
		}
	}
	if got, want := ents[2].LastUsed.Unix(), now.Add(-48*time.Hour).Unix(); got != want {
		t.Errorf("LastUsed of b: got %d, want %d", got, want)
	}

	// Older than a day: a is in use, the legacy file is not ours; b goes.
	removed, err := c.s.Prune(PruneOptions{OlderThan: 24 * time.Hour, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[0].Name != "b.bin" {
		t.Errorf("Prune by age removed %+v, want b.bin only", removed)
	}
	// To 1000 bytes: the .part (newest: just written) and c are candidates,
	// least recently used first; a stays in use.
	removed, err = c.s.Prune(PruneOptions{MaxBytes: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 2 || removed[0].Name != "c.bin" || removed[1].Name != "d.bin.part" {
		t.Errorf("Prune by size removed %+v, want c.bin then d.bin.part", removed)
	}
	want2 := map[string]bool{"a": true, "b": false, "c": false}
	if got := c.present("a", "b", "c"); !equalMaps(got, want2) {
		t.Errorf("after Prune: got %v, want %v", got, want2)
	}
	if _, err := os.Stat(filepath.Join(root, "legacy.gguf")); err != nil {
		t.Errorf("legacy file: %v", err)
	}
	if _, err := c.s.Prune(PruneOptions{OlderThan: -1}); err == nil {
		t.Errorf("Prune with a negative age: got nil error")
	}
}

func equalMaps(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
