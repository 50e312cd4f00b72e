package localmodels

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

func model(id string) Model {
	return Model{ID: id, Engine: "synthetic", Files: []protocol.ModelFile{},
		CliDefaults: &protocol.ModelCliDefaults{CfgScale: 1, Steps: 1, Width: 64, Height: 64}}
}

// TestSeedPersistDelete: a new file holds the seed; a put and a delete
// survive a reopen; the seed is not applied to an existing file.
func TestSeedPersistDelete(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	c, err := Open(path, []Model{model("seeded")})
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("catalog file: %v, mode %v; want 0600", err, fi.Mode())
	}
	if err := c.Put(model("added")); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete("seeded"); err != nil {
		t.Fatal(err)
	}
	c2, err := Open(path, []Model{model("other-seed")})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range c2.List() {
		ids = append(ids, m.ID)
	}
	if got := strings.Join(ids, ","); got != "added" {
		t.Fatalf("after reopen: got %q, want %q", got, "added")
	}
	if err := c2.Delete("seeded"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete of a deleted model: got %v, want ErrNotFound", err)
	}
}

// TestHostileIDs: ids that would escape the model cache dir or are not
// plain names are refused, and the file is unchanged.
func TestHostileIDs(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	c, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	for _, id := range []string{"", ".", "..", "../etc", "a/b", `a\b`, ".hidden", "-dash", "a b", "a\x00b", "é", strings.Repeat("a", 129), "a\nb"} {
		if err := c.Put(model(id)); !errors.Is(err, ErrInvalid) {
			t.Errorf("put %q: got %v, want ErrInvalid", id, err)
		}
		if err := c.Delete(id); !errors.Is(err, ErrInvalid) {
			t.Errorf("delete %q: got %v, want ErrInvalid", id, err)
		}
	}
	bad := model("no-defaults")
	bad.CliDefaults = nil
	if err := c.Put(bad); !errors.Is(err, ErrInvalid) {
		t.Errorf("put without cliDefaults: got %v, want ErrInvalid", err)
	}
	bad = model("bad-file")
	bad.Files = []protocol.ModelFile{{Role: "model", URL: "https://example.com/m.gguf", Filename: "../m.gguf"}}
	if err := c.Put(bad); !errors.Is(err, ErrInvalid) {
		t.Errorf("put with a path as file name: got %v, want ErrInvalid", err)
	}
	after, _ := os.ReadFile(path)
	if string(before) != string(after) {
		t.Errorf("file changed by refused requests:\n%s\n->\n%s", before, after)
	}
}

func TestFull(t *testing.T) {
	c, err := Open(filepath.Join(t.TempDir(), FileName), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range MaxModels {
		if err := c.Put(model("m" + strings.Repeat("x", i%5) + string(rune('a'+i%26)) + itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Put(model("one-more")); !errors.Is(err, ErrFull) {
		t.Fatalf("put past the limit: got %v, want ErrFull", err)
	}
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}

func TestBadFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	for _, content := range []string{"{", `{"models":[{"id":"../x","engine":"e","files":[],"cliDefaults":{"cfgScale":1,"steps":1,"width":1,"height":1}}]}`} {
		os.WriteFile(path, []byte(content), 0o600)
		if _, err := Open(path, nil); err == nil {
			t.Errorf("Open of %q succeeded", content)
		}
	}
}
