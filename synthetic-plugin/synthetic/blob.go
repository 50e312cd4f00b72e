package synthetic

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
)

// Blob writes n deterministic pseudo-random bytes derived from seed to w:
// the same seed and n always give the same bytes, and a longer blob starts
// with the bytes of a shorter one. It exists for tests elsewhere in the
// module that need a large output of known content (the supervisor's
// streaming test) without keeping it in memory: hash what Blob writes into
// a sha256 to know the expected digest. It writes in 64 KiB pieces and
// returns the first error from w.
func Blob(seed string, n int64, w io.Writer) error {
	if n < 0 {
		return errors.New("synthetic: negative blob length")
	}
	src := rand.NewChaCha8(sha256.Sum256([]byte(seed)))
	buf := make([]byte, 64<<10)
	for n > 0 {
		p := buf[:min(int64(len(buf)), n)]
		src.Read(p) // never fails
		if _, err := w.Write(p); err != nil {
			return fmt.Errorf("synthetic: writing blob: %w", err)
		}
		n -= int64(len(p))
	}
	return nil
}
