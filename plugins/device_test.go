package plugins

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"
)

func TestHostDevice(t *testing.T) {
	d := HostDevice("cpu")
	if d.Backend != "cpu" || d.Name == "" {
		t.Fatalf("HostDevice = %+v", d)
	}
	if runtime.GOOS == "linux" && (d.MemoryTotal == 0 || d.MemoryFree == 0 || d.MemoryFree > d.MemoryTotal) {
		t.Errorf("memory on Linux: total %d, free %d", d.MemoryTotal, d.MemoryFree)
	}
}

func TestCancelled(t *testing.T) {
	host := Errorf(ErrStalled, "stopped by the host")
	cases := []struct {
		err  error
		kind ErrorKind
		want string
	}{
		{context.Canceled, ErrCancelled, "job cancelled: context canceled"},
		{context.DeadlineExceeded, ErrCancelled, "job deadline exceeded: context deadline exceeded"},
		{fmt.Errorf("send: %w", host), ErrStalled, "stopped by the host"},
		{errors.New("stream closed"), ErrCancelled, "job cancelled: stream closed"},
	}
	for _, c := range cases {
		je := AsJobError(Cancelled(c.err))
		if je.Kind != c.kind || je.Message != c.want {
			t.Errorf("Cancelled(%v) = %s %q, want %s %q", c.err, je.Kind, je.Message, c.kind, c.want)
		}
	}
}
