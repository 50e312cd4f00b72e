package logship

import (
	"fmt"
	"testing"
	"time"
)

var fixed = time.Date(2026, 6, 11, 9, 14, 3, 512_000_000, time.UTC)

func entry(i int) Entry {
	return Entry{Ts: "t", Level: LevelInfo, Category: "test", Message: fmt.Sprintf("line %d", i)}
}

func marker(capacity, n int) Entry {
	return Entry{Ts: "2026-06-11T09:14:03.512Z", Level: LevelWarn, Category: CategoryLogs,
		Message: fmt.Sprintf("ship queue full (%d entries); dropped %d oldest", capacity, n)}
}

func TestQueueBoundAndMarker(t *testing.T) {
	tests := []struct {
		name   string
		cap    int
		pushes int
		want   []Entry
	}{
		{"empty", 3, 0, nil},
		{"under bound", 3, 2, []Entry{entry(0), entry(1)}},
		{"at bound", 3, 3, []Entry{entry(0), entry(1), entry(2)}},
		{"first overflow drops two for the marker", 3, 4, []Entry{marker(3, 2), entry(2), entry(3)}},
		{"second overflow coalesces", 3, 5, []Entry{marker(3, 3), entry(3), entry(4)}},
		{"many overflows, one marker", 4, 100, []Entry{marker(4, 97), entry(97), entry(98), entry(99)}},
		{"minimum capacity", 2, 5, []Entry{marker(2, 4), entry(4)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := New(WithCapacity(tt.cap), WithClock(func() time.Time { return fixed }))
			for i := 0; i < tt.pushes; i++ {
				q.Push(entry(i))
			}
			if got := q.Len(); got != len(tt.want) {
				t.Fatalf("Len() = %d, want %d", got, len(tt.want))
			}
			assertEntries(t, q.Drain(), tt.want)
			if got := q.Len(); got != 0 {
				t.Errorf("Len() after Drain = %d, want 0", got)
			}
		})
	}
}

func TestQueueMarkerResetsAfterDrain(t *testing.T) {
	q := New(WithCapacity(3), WithClock(func() time.Time { return fixed }))
	for i := 0; i < 10; i++ {
		q.Push(entry(i))
	}
	q.Drain()
	for i := 10; i < 14; i++ {
		q.Push(entry(i))
	}
	// A new run of drops starts a new count.
	assertEntries(t, q.Drain(), []Entry{marker(3, 2), entry(12), entry(13)})
}

func TestQueueRequeue(t *testing.T) {
	tests := []struct {
		name   string
		cap    int
		front  []Entry
		queued []Entry
		want   []Entry
	}{
		{"nothing to requeue", 5, nil, []Entry{entry(1)}, []Entry{entry(1)}},
		{"front goes first", 5, []Entry{entry(0), entry(1)}, []Entry{entry(2)}, []Entry{entry(0), entry(1), entry(2)}},
		{"into empty queue", 5, []Entry{entry(0)}, nil, []Entry{entry(0)}},
		{"over the bound drops the oldest of the front", 4,
			[]Entry{entry(0), entry(1), entry(2)}, []Entry{entry(3), entry(4)},
			[]Entry{marker(4, 2), entry(2), entry(3), entry(4)}},
		{"new entries alone over the bound", 3,
			[]Entry{entry(0)}, []Entry{entry(1), entry(2), entry(3)},
			[]Entry{marker(3, 2), entry(2), entry(3)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := New(WithCapacity(tt.cap), WithClock(func() time.Time { return fixed }))
			for _, e := range tt.queued {
				q.Push(e)
			}
			q.Requeue(Batch{Entries: tt.front})
			assertEntries(t, q.Drain(), tt.want)
		})
	}
}

func TestQueueRequeueKeepsBoundAfterMarker(t *testing.T) {
	// A live marker at the front when a batch is requeued becomes a plain
	// entry; the bound still holds and pushes still coalesce.
	q := New(WithCapacity(3), WithClock(func() time.Time { return fixed }))
	for i := 0; i < 5; i++ {
		q.Push(entry(i))
	}
	q.Requeue(Batch{Entries: []Entry{entry(-1)}})
	if got := q.Len(); got != 3 {
		t.Fatalf("Len() = %d, want 3", got)
	}
	for i := 5; i < 20; i++ {
		q.Push(entry(i))
	}
	got := q.Drain()
	if len(got) != 3 {
		t.Fatalf("len = %d, want 3: %+v", len(got), got)
	}
	if got[0].Category != CategoryLogs || got[2] != entry(19) {
		t.Errorf("got %+v, want a marker first and line 19 last", got)
	}
}

// TestQueueFlood is the "flood of 50,000 log lines": the queue stays
// at its bound, the newest lines survive, and exactly one marker counts the
// rest.
func TestQueueFlood(t *testing.T) {
	q := New(WithClock(func() time.Time { return fixed }))
	const n = 50_000
	for i := 0; i < n; i++ {
		q.Push(entry(i))
		if q.Len() > DefaultCapacity {
			t.Fatalf("Len() = %d after %d pushes, want at most %d", q.Len(), i+1, DefaultCapacity)
		}
	}
	got := q.Drain()
	if len(got) != DefaultCapacity {
		t.Fatalf("len = %d, want %d", len(got), DefaultCapacity)
	}
	if got[0] != marker(DefaultCapacity, n-DefaultCapacity+1) {
		t.Errorf("got[0] = %+v, want marker for %d drops", got[0], n-DefaultCapacity+1)
	}
	markers := 0
	for _, e := range got {
		if e.Category == CategoryLogs {
			markers++
		}
	}
	if markers != 1 {
		t.Errorf("got %d markers, want 1", markers)
	}
	if got[len(got)-1] != entry(n-1) || got[1] != entry(n-DefaultCapacity+1) {
		t.Errorf("got first real %q and last %q, want lines %d and %d", got[1].Message, got[len(got)-1].Message, n-DefaultCapacity+1, n-1)
	}
}

func BenchmarkQueuePushFull(b *testing.B) {
	q := New()
	for i := 0; i < DefaultCapacity; i++ {
		q.Push(entry(i))
	}
	e := entry(0)
	b.ReportAllocs()
	for b.Loop() {
		q.Push(e)
	}
}

func assertEntries(t *testing.T, got, want []Entry) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d entries %+v, want %d %+v", len(got), got, len(want), want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}
