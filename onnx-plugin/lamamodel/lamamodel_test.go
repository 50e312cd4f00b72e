package lamamodel

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

// TestTinyLaMaDeterministic writes the model twice and checks that the
// writes are equal and match the pinned TinyLaMaSHA256 and TinyLaMaSize,
// which the dev models trust instead of generating the model.
func TestTinyLaMaDeterministic(t *testing.T) {
	var a, b bytes.Buffer
	if err := WriteTinyLaMa(&a); err != nil {
		t.Fatal(err)
	}
	if err := WriteTinyLaMa(&b); err != nil {
		t.Fatal(err)
	}
	sa, sb := sha256.Sum256(a.Bytes()), sha256.Sum256(b.Bytes())
	if sa != sb {
		t.Fatalf("two writes differ: %x (%d bytes) and %x (%d bytes)", sa, a.Len(), sb, b.Len())
	}
	if got := hex.EncodeToString(sa[:]); got != TinyLaMaSHA256 || a.Len() != TinyLaMaSize {
		t.Errorf("got sha256 %s (%d bytes), want TinyLaMaSHA256 %s (%d bytes); update both constants, on purpose, when the generator changes", got, a.Len(), TinyLaMaSHA256, TinyLaMaSize)
	}
}
