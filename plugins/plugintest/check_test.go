package plugintest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestBoundHit: a call ended by its own bound is told apart from one ended
// by the caller, also when the plugin's DeadlineExceeded arrives before the
// bounded context's timer has fired.
func TestBoundHit(t *testing.T) {
	live := context.Background()
	gone, cancel := context.WithCancel(live)
	cancel()
	pending, stop := context.WithCancel(live) // a bound whose timer has not fired yet
	defer stop()
	grpcDeadline := fmt.Errorf("describe: %w", status.Error(codes.DeadlineExceeded, "stream terminated by RST_STREAM"))
	cases := []struct {
		name            string
		parent, bounded context.Context
		err             error
		want            bool
	}{
		{"bound fired", live, gone, errors.New("anything"), true},
		{"plugin's deadline first", live, pending, grpcDeadline, true},
		{"context deadline error", live, pending, context.DeadlineExceeded, true},
		{"the caller cancelled", gone, gone, grpcDeadline, false},
		{"another error in time", live, pending, errors.New("broken"), false},
		{"no error in time", live, pending, nil, false},
		{"any error past the deadline", live, passed{live}, status.Error(codes.Internal, "describe: context deadline exceeded"), true},
		{"no error past the deadline", live, passed{live}, nil, false},
	}
	for _, c := range cases {
		if got := boundHit(c.parent, c.bounded, c.err); got != c.want {
			t.Errorf("%s: boundHit = %t, want %t", c.name, got, c.want)
		}
	}
}

// passed is a bound whose deadline is behind us but whose timer has not
// fired yet: what a loaded machine shows for a moment.
type passed struct{ context.Context }

func (passed) Deadline() (time.Time, bool) { return time.Now().Add(-time.Millisecond), true }
