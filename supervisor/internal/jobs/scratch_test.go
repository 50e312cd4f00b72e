package jobs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNewRemovesScratchOfAKilledAgent: a job's scratch dir is removed when
// the job is reported, so one found at start belongs to a run that was
// killed (SIGKILL, power loss) and nothing will ever remove it. New removes
// those, and leaves alone what it did not make.
func TestNewRemovesScratchOfAKilledAgent(t *testing.T) {
	work := t.TempDir()
	for _, p := range []string{
		"job-abc-123456/input-audio.wav",
		"job-abc-123456/.input-42.part",
		"job-def-99/deep/er/out.spool",
	} {
		p = filepath.Join(work, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("left behind"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(work, "operator-notes.txt"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Engines: fakeEngines{}, Models: fakeModels{}, WorkDir: work}); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(work)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if len(got) != 1 || got[0] != "operator-notes.txt" {
		t.Errorf("work dir after New: got %q, want only [operator-notes.txt]", got)
	}
}

func TestSafeName(t *testing.T) {
	long := strings.Repeat("a", 70)
	tests := []struct{ in, want string }{
		{"job-1.a_B", "job-1.a_B"},
		{"../../etc/passwd", ".._.._etc_passwd"},
		{"jöb 7", "j_b_7"},
		{"\xff\xfeid", "__id"},
		{"", ""},
		{long, long[:64]},
		{strings.Repeat("é", 70), strings.Repeat("_", 64)},
	}
	for _, tt := range tests {
		if got := safeName(tt.in); got != tt.want {
			t.Errorf("safeName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
