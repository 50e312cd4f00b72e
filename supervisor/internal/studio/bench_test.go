package studio

import (
	"context"
	"io"
	"testing"

	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

// zeroReader yields n zero bytes without holding them.
type zeroReader struct{ n int64 }

func (z *zeroReader) Read(p []byte) (int, error) {
	if z.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > z.n {
		p = p[:z.n]
	}
	clear(p)
	z.n -= int64(len(p))
	return len(p), nil
}

func (z *zeroReader) Close() error { return nil }

// BenchmarkUpload streams a 64 MiB result through the multipart upload to a
// loopback studio that discards it. B/op shows the body is never buffered.
func BenchmarkUpload(b *testing.B) {
	const size = 64 << 20
	st := newTestStudioTB(b)
	st.discard.Store(true)
	c, err := New(testConfig(st, newRunner(), &syncBuffer{}))
	if err != nil {
		b.Fatal(err)
	}
	s := &session{c: c, log: c.log, workerID: testWorker, token: c.cfg.AuthToken, done: make(chan struct{}), broken: make(chan struct{})}
	open := func() (io.ReadCloser, error) { return &zeroReader{n: size}, nil }
	b.SetBytes(size)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		rep := c.newReporter(s, "job-bench", c.log)
		if err := rep.Upload(context.Background(), "webp", "p", open); err != nil {
			b.Fatal(err)
		}
	}
	if ups := st.uploadList(); len(ups) != i || ups[0].size != size {
		b.Fatalf("studio got %d uploads of %d bytes", len(ups), ups[0].size)
	}
}

// BenchmarkFrameRoundTrip measures offer → accept through a live session
// (the runner returns at once; the busy slot is awaited between offers).
func BenchmarkFrameRoundTrip(b *testing.B) {
	st := newTestStudioTB(b)
	r := newRunner()
	c, err := New(testConfig(st, r, &syncBuffer{}))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	sc := <-st.conns
	defer sc.ws.Close()
	<-sc.frames // hello
	if err := sc.ws.WriteJSON(map[string]string{"type": "welcome", "workerId": testWorker, "serverTime": "now"}); err != nil {
		b.Fatal(err)
	}
	cl := llmClaim("job-b")
	msg, _ := protocol.Encode(protocol.Offer{Claim: cl})
	b.ReportAllocs()
	for b.Loop() {
		for c.busy.Load() {
		}
		if err := sc.ws.WriteMessage(1, msg); err != nil {
			b.Fatal(err)
		}
		for {
			if _, ok := (<-sc.frames).(protocol.Accept); ok {
				break
			}
		}
		<-r.ended
	}
}
