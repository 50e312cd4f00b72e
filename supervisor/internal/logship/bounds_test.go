package logship

import (
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// TestClip: a 40 MiB line (the plugin line) is shipped as 8 KiB
// and a marker, cut at a character boundary; short fields stay as they are.
func TestClip(t *testing.T) {
	tests := []struct {
		name, msg string
		wantCut   bool
	}{
		{"short", "hello", false},
		{"at the bound", strings.Repeat("a", MaxMessageBytes), false},
		{"40 MiB", strings.Repeat("a", 40<<20), true},
		{"multi-byte characters across the cut", strings.Repeat("é", MaxMessageBytes), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := New()
			q.Push(Entry{Ts: "t", Level: LevelInfo, Category: strings.Repeat("c", 1000), Message: tt.msg, JobID: "job-1"})
			got := q.Drain()[0]
			if !tt.wantCut {
				if got.Message != tt.msg {
					t.Errorf("message changed: %d bytes, want %d", len(got.Message), len(tt.msg))
				}
			} else {
				if len(got.Message) > MaxMessageBytes+64 || !strings.HasSuffix(got.Message, "[truncated: "+strconv.Itoa(len(tt.msg))+" bytes]") {
					t.Errorf("got %d bytes ending %q, want at most %d and a marker", len(got.Message), got.Message[len(got.Message)-40:], MaxMessageBytes+64)
				}
			}
			if !utf8.ValidString(got.Message) {
				t.Error("cut in the middle of a character")
			}
			if len(got.Category) != maxFieldBytes || got.JobID != "job-1" {
				t.Errorf("category %d bytes, jobId %q; want %d and job-1", len(got.Category), got.JobID, maxFieldBytes)
			}
		})
	}
}

// TestQueueByteBound: big entries hit the byte bound before the count
// bound; the marker names the byte bound.
func TestQueueByteBound(t *testing.T) {
	q := New(WithClock(func() time.Time { return fixed }))
	big := strings.Repeat("b", MaxMessageBytes)
	for range 2000 { // 2000 × 8 KiB = 16 MiB, over the 4 MiB bound
		q.Push(Entry{Ts: "t", Level: LevelInfo, Category: "c", Message: big})
	}
	q.mu.Lock()
	bytes := q.bytes
	q.mu.Unlock()
	if bytes > DefaultMaxBytes {
		t.Errorf("queue holds %d bytes, want at most %d", bytes, DefaultMaxBytes)
	}
	got := q.Drain()
	if m := got[0]; m.Category != CategoryLogs || !strings.HasPrefix(m.Message, "ship queue full (4194304 bytes); dropped") {
		t.Errorf("first entry %+v, want the byte bound's marker", m)
	}
}

func TestNextBatchSplitsByBytes(t *testing.T) {
	q := New()
	for i := range 1000 {
		q.Push(entry(i))
	}
	const limit = 8 << 10
	seen := 0
	for q.Len() > 0 {
		b := q.NextBatch(limit)
		if b.Len() == 0 || b.Bytes > limit {
			t.Fatalf("batch of %d entries, %d bytes; want some, at most %d", b.Len(), b.Bytes, limit)
		}
		sum := 0
		for _, e := range b.Entries {
			if e != entry(seen) {
				t.Fatalf("entry %+v, want line %d (order kept)", e, seen)
			}
			seen++
			sum += Size(e)
		}
		if sum != b.Bytes {
			t.Errorf("Bytes = %d, entries add up to %d", b.Bytes, sum)
		}
	}
	if seen != 1000 {
		t.Errorf("%d entries shipped, want 1000", seen)
	}
	// One entry larger than the limit still goes, alone.
	q.Push(Entry{Message: strings.Repeat("x", MaxMessageBytes)})
	q.Push(entry(1))
	if b := q.NextBatch(100); b.Len() != 1 {
		t.Errorf("oversized head: batch of %d, want 1", b.Len())
	}
}

// TestRequeueGivesUp: a batch that fails MaxBatchTries sends is dropped
// with a marker instead of going back again; Drop does so at once.
func TestRequeueGivesUp(t *testing.T) {
	q := New(WithClock(func() time.Time { return fixed }))
	q.Push(entry(0))
	for try := 1; try <= MaxBatchTries; try++ {
		b := q.NextBatch(1 << 20)
		if b.Len() != 1 || b.Entries[0] != entry(0) {
			t.Fatalf("send %d: batch %+v, want line 0 again", try, b.Entries)
		}
		q.Requeue(b)
	}
	got := q.Drain()
	if len(got) != 1 || got[0].Category != CategoryLogs || !strings.Contains(got[0].Message, "dropped 1 log entries the studio did not take in 3 sends") {
		t.Errorf("after %d failed sends: %+v, want only a marker", MaxBatchTries, got)
	}

	q.Push(entry(7))
	b := q.NextBatch(1 << 20)
	q.Push(entry(8))
	q.Drop(b, "refused as too large (1009)")
	got = q.Drain()
	if len(got) != 2 || !strings.Contains(got[0].Message, "dropped a log batch of 1 entries") || !strings.Contains(got[0].Message, "1009") || got[1] != entry(8) {
		t.Errorf("after Drop: %+v, want the marker then line 8", got)
	}
}

// TestSinkCutsHugeValues: a line whose message or values are megabytes is
// shipped cut, each part before it is copied.
func TestSinkCutsHugeValues(t *testing.T) {
	log, q := newLogger(t)
	huge := strings.Repeat("h", 5<<20)
	log.Info(huge, "job", huge, "detail", huge)
	got := q.Drain()
	if len(got) != 1 {
		t.Fatalf("%d entries, want 1", len(got))
	}
	e := got[0]
	if len(e.Message) > MaxMessageBytes+64 || !strings.Contains(e.Message, "[truncated: ") || len(e.JobID) > maxFieldBytes {
		t.Errorf("entry of %d bytes (jobId %d), want the message cut to about %d with a marker, the job id to %d",
			len(e.Message), len(e.JobID), MaxMessageBytes, maxFieldBytes)
	}
}
