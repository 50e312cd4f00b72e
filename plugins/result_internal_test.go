package plugins

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	enginev1 "github.com/stokerhq/stoker/proto/engine/v1"
)

// recordSink records the events of a run by their kind, and fails every
// send once fail is set.
type recordSink struct {
	mu   sync.Mutex
	got  []string
	fail error
}

func (s *recordSink) send(_ uint64, r *enginev1.RunResponse) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	kind := fmt.Sprintf("%T", r.GetEvent())
	switch r.GetEvent().(type) {
	case *enginev1.RunResponse_Result:
		kind = "result"
	case *enginev1.RunResponse_Log:
		kind = "log"
	case *enginev1.RunResponse_Progress:
		kind = "progress"
	case *enginev1.RunResponse_Done:
		kind = "done"
	case *enginev1.RunResponse_Error:
		kind = "error"
	}
	s.got = append(s.got, kind)
	return nil
}

// runEngine is an engine whose Run is the test's function.
type runEngine struct {
	echoEngine
	run func(ev Events) error
}

func (e runEngine) Run(_ context.Context, _ *RunRequest, ev Events) error { return e.run(ev) }

// The result is held until the next event or the end of the run, so that
// it and the terminal event leave together; what comes after it still
// comes after it, a second result still reaches the host (which refuses
// it), and a host already gone is still reported by Result.
func TestResultLeavesWithTheOutcome(t *testing.T) {
	for _, c := range []struct {
		name string
		run  func(ev Events) error
		want []string
	}{
		{"result then done", func(ev Events) error { return ev.Result([]byte(`{}`)) }, []string{"result", "done"}},
		{"progress pending at the end", func(ev Events) error {
			if err := ev.Result([]byte(`{}`)); err != nil {
				return err
			}
			return ev.Progress(9, 9, "token")
		}, []string{"result", "progress", "done"}},
		{"a log after the result", func(ev Events) error {
			if err := ev.Result([]byte(`{}`)); err != nil {
				return err
			}
			return ev.Log("info", "after")
		}, []string{"result", "log", "done"}},
		{"two results", func(ev Events) error {
			_ = ev.Result([]byte(`{"a":1}`))
			return ev.Result([]byte(`{"a":2}`))
		}, []string{"result", "result", "done"}},
		{"a result, then an error", func(ev Events) error {
			_ = ev.Result([]byte(`{}`))
			return Errorf(ErrEngine, "broke after all")
		}, []string{"result", "error"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			sink := &recordSink{}
			s := &grpcServer{impl: runEngine{run: c.run}}
			pump := startProgressPump()
			defer pump.stop()
			req := runRequestToProto(&RunRequest{JobID: "j", Task: Task{Kind: KindLLM, LLM: &LLMTask{Messages: []Message{{Role: "user", Content: "x"}}}}})
			if err := s.runJob(context.Background(), sink, 1, req, pump); err != nil {
				t.Fatal(err)
			}
			// Progress sent by the pump in between may add one more
			// progress event; the order of the rest is what counts.
			got := slices.DeleteFunc(slices.Clone(sink.got), func(k string) bool { return k == "progress" })
			want := slices.DeleteFunc(slices.Clone(c.want), func(k string) bool { return k == "progress" })
			if !slices.Equal(got, want) {
				t.Errorf("events %v, want %v", sink.got, c.want)
			}
		})
	}
	t.Run("held until the run ends", func(t *testing.T) {
		sink := &recordSink{}
		var before []string
		s := &grpcServer{impl: runEngine{run: func(ev Events) error {
			err := ev.Result([]byte(`{}`))
			sink.mu.Lock()
			before = slices.Clone(sink.got)
			sink.mu.Unlock()
			return err
		}}}
		pump := startProgressPump()
		defer pump.stop()
		req := runRequestToProto(&RunRequest{JobID: "j", Task: Task{Kind: KindLLM, LLM: &LLMTask{Messages: []Message{{Role: "user", Content: "x"}}}}})
		if err := s.runJob(context.Background(), sink, 1, req, pump); err != nil {
			t.Fatal(err)
		}
		if len(before) != 0 || !slices.Equal(sink.got, []string{"result", "done"}) {
			t.Errorf("sent %v before Run returned and %v in all; want nothing, then result and done together", before, sink.got)
		}
	})
	t.Run("the host gone", func(t *testing.T) {
		gone := errors.New("the host is gone")
		sink := &recordSink{}
		var resultErr error
		s := &grpcServer{impl: runEngine{run: func(ev Events) error {
			_ = ev.Log("info", "first")
			sink.mu.Lock()
			sink.fail = gone
			sink.mu.Unlock()
			_ = ev.Log("info", "lost")
			resultErr = ev.Result([]byte(`{}`))
			return resultErr
		}}}
		pump := startProgressPump()
		defer pump.stop()
		req := runRequestToProto(&RunRequest{JobID: "j", Task: Task{Kind: KindLLM, LLM: &LLMTask{Messages: []Message{{Role: "user", Content: "x"}}}}})
		_ = s.runJob(context.Background(), sink, 1, req, pump)
		if !errors.Is(resultErr, gone) {
			t.Errorf("Result after the host went: %v, want its send error", resultErr)
		}
	})
}
