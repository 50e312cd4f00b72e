package localapi

import (
	"sync"
	"testing"
)

func TestTally(t *testing.T) {
	var tl Tally
	if got := tl.Counters(); got != (Counters{}) {
		t.Fatalf("zero Tally = %+v", got)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				tl.Completed()
				tl.Failed(true)
				tl.Failed(false)
				tl.Failed(false)
				tl.Rejected()
				tl.Uploaded(10)
				tl.Uploaded(-5) // nonsense is ignored, never subtracted
			}
		}()
	}
	wg.Wait()
	want := Counters{
		Jobs:        JobCounters{Completed: 800, FailedRetryable: 800, FailedFinal: 1600, Rejected: 800},
		UploadBytes: 8000,
	}
	if got := tl.Counters(); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}
