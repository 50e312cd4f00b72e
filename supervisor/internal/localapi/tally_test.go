package localapi

import (
	"sync"
	"testing"
	"time"
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
				tl.JobDone("image", "sdcpp", OutcomeCompleted, 10, time.Second)
				tl.JobDone("llm", "llamacpp", OutcomeFailedRetryable, 0, time.Second)
				tl.JobDone("llm", "llamacpp", OutcomeFailedFinal, 0, time.Second)
				tl.JobDone("llm", "llamacpp", OutcomeFailedFinal, -5, time.Second) // nonsense is ignored, never subtracted
			}
		}()
	}
	wg.Wait()
	want := Counters{
		Jobs:        JobCounters{Completed: 800, FailedRetryable: 800, FailedFinal: 1600},
		UploadBytes: 8000,
	}
	if got := tl.Counters(); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}
