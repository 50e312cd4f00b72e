package synthetic

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"testing"
)

func TestBlob(t *testing.T) {
	blob := func(seed string, n int64) []byte {
		t.Helper()
		var b bytes.Buffer
		if err := Blob(seed, n, &b); err != nil {
			t.Fatalf("Blob(%q, %d): %v", seed, n, err)
		}
		if int64(b.Len()) != n {
			t.Fatalf("Blob(%q, %d) wrote %d bytes", seed, n, b.Len())
		}
		return b.Bytes()
	}
	a := blob("s", 200_001)
	if !bytes.Equal(a, blob("s", 200_001)) {
		t.Error("same seed, different bytes")
	}
	if !bytes.Equal(blob("s", 1000), a[:1000]) {
		t.Error("a shorter blob is not a prefix of a longer one")
	}
	if bytes.Equal(blob("t", 1000), a[:1000]) {
		t.Error("different seeds, same bytes")
	}
	if len(blob("s", 0)) != 0 {
		t.Error("zero-length blob wrote bytes")
	}
	if bytes.Count(a, []byte{0}) > len(a)/128 {
		t.Error("blob is mostly zeros")
	}
	if err := Blob("s", -1, &bytes.Buffer{}); err == nil {
		t.Error("negative length accepted")
	}
}

type brokenWriter struct{ n int }

var errBroken = errors.New("broken")

func (w *brokenWriter) Write(p []byte) (int, error) {
	if w.n == 0 {
		return 0, errBroken
	}
	w.n--
	return len(p), nil
}

func TestBlobWriterError(t *testing.T) {
	if err := Blob("s", 1<<20, &brokenWriter{n: 3}); !errors.Is(err, errBroken) {
		t.Errorf("Blob = %v, want %v", err, errBroken)
	}
}

// BenchmarkBlob64MiB is the cost of producing the supervisor's 64 MiB
// streaming-test payload, hashed as that test does.
func BenchmarkBlob64MiB(b *testing.B) {
	const n = 64 << 20
	b.SetBytes(n)
	for b.Loop() {
		h := sha256.New()
		if err := Blob("bench", n, h); err != nil {
			b.Fatal(err)
		}
	}
}
