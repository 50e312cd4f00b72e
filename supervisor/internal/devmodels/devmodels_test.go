package devmodels

import (
	"os"
	"path/filepath"
	"testing"
)

func TestEnsureWritesAndRepairs(t *testing.T) {
	dir := t.TempDir()
	first, err := Ensure(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != 2 {
		t.Fatalf("got %d models, want 2", len(first))
	}
	// A stale or damaged file is rewritten to this build's content.
	if err := os.WriteFile(filepath.Join(dir, first[0].Filename), []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}
	again, err := Ensure(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range first {
		if again[i].SHA256 != first[i].SHA256 || again[i].Size != first[i].Size || again[i].Size < 1000 {
			t.Errorf("%s: got %s (%d bytes), want %s (%d bytes)", first[i].ID, again[i].SHA256, again[i].Size, first[i].SHA256, first[i].Size)
		}
	}
}
