package models

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFetchDoesNotFollowPlantedLinks plants a symlink or a hard link where
// the store keeps a .part, a cached file, a lock or a verification record,
// pointing at a file outside the cache. The store must neither write
// through it nor trust what it points to: the victim is left as it was and
// the job gets the real bytes.
func TestFetchDoesNotFollowPlantedLinks(t *testing.T) {
	data := randomBytes(64<<10, 21)
	o := newOrigin(t)
	o.serveBytes("/w.gguf", data)
	victimBytes := []byte("victim: a file the worker must never touch\n")

	tests := []struct {
		name  string
		sha   bool
		plant func(t *testing.T, root, victim string)
	}{
		{"part symlink", false, func(t *testing.T, root, victim string) {
			mustSymlink(t, victim, filepath.Join(root, "m", "w.gguf.part"))
		}},
		{"part symlink with a sha256", true, func(t *testing.T, root, victim string) {
			mustSymlink(t, victim, filepath.Join(root, "m", "w.gguf.part"))
		}},
		{"part hard link", false, func(t *testing.T, root, victim string) {
			mustMkdir(t, filepath.Join(root, "m"))
			if err := os.Link(victim, filepath.Join(root, "m", "w.gguf.part")); err != nil {
				t.Fatal(err)
			}
		}},
		{"cached file symlink", false, func(t *testing.T, root, victim string) {
			mustSymlink(t, victim, filepath.Join(root, "m", "w.gguf"))
		}},
		{"legacy flat file symlink", false, func(t *testing.T, root, victim string) {
			mustSymlink(t, victim, filepath.Join(root, "w.gguf"))
		}},
		{"lock symlink to a missing file", false, func(t *testing.T, root, victim string) {
			mustSymlink(t, victim+".created", filepath.Join(root, metaDir, "locks", "m", "w.gguf.lock"))
		}},
		{"record symlink to a forged record", true, func(t *testing.T, root, victim string) {
			// A corrupt cached file, and a record outside the cache that
			// vouches for it.
			p := filepath.Join(root, "m", "w.gguf")
			mustMkdir(t, filepath.Dir(p))
			bad := bytes.Clone(data)
			bad[0] ^= 0xff
			if err := os.WriteFile(p, bad, 0o644); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			forged, _ := json.Marshal(record{SHA256: sha(data), Size: fi.Size(), MtimeNs: fi.ModTime().UnixNano()})
			if err := os.WriteFile(victim, forged, 0o644); err != nil {
				t.Fatal(err)
			}
			mustSymlink(t, victim, filepath.Join(root, metaDir, "verified", "m", "w.gguf.json"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t, testConfig(t))
			victim := filepath.Join(t.TempDir(), "victim")
			if err := os.WriteFile(victim, victimBytes, 0o644); err != nil {
				t.Fatal(err)
			}
			tt.plant(t, s.Root(), victim)
			before, err := os.ReadFile(victim)
			if err != nil {
				t.Fatal(err)
			}
			f := File{URL: o.URL + "/w.gguf", Filename: "w.gguf"}
			if tt.sha {
				f.SHA256 = sha(data)
			}
			got, err := s.Fetch(context.Background(), "m", []File{f})
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			after, err := os.ReadFile(victim)
			if err != nil || !bytes.Equal(after, before) {
				t.Errorf("victim: got %d bytes (err %v), want it untouched (%d bytes)", len(after), err, len(before))
			}
			if _, err := os.Lstat(victim + ".created"); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a file was created through a planted lock symlink (lstat: %v)", err)
			}
			fi, err := os.Lstat(got[0].Path)
			if err != nil || !fi.Mode().IsRegular() {
				t.Fatalf("result %s: got %v (err %v), want a regular file", got[0].Path, fi, err)
			}
			if b, _ := os.ReadFile(got[0].Path); !bytes.Equal(b, data) {
				t.Errorf("result: got %d bytes that differ from the served ones", len(b))
			}
		})
	}
}

// TestOpenRefusesRootOthersCanWrite: another user who can write models_root,
// or any directory above it, can plant files the agent then trusts or
// writes through; the store refuses to open such a root.
func TestOpenRefusesRootOthersCanWrite(t *testing.T) {
	tests := []struct {
		name string
		// setup returns the root to open, under base (mode 0700, ours).
		setup   func(t *testing.T, base string) string
		refused bool
	}{
		{"0755 root", func(t *testing.T, base string) string {
			return mkdirMode(t, filepath.Join(base, "models"), 0o755)
		}, false},
		{"root missing, created", func(t *testing.T, base string) string {
			return filepath.Join(base, "a", "models")
		}, false},
		{"world-writable root", func(t *testing.T, base string) string {
			return mkdirMode(t, filepath.Join(base, "models"), 0o777)
		}, true},
		{"group-writable root", func(t *testing.T, base string) string {
			return mkdirMode(t, filepath.Join(base, "models"), 0o775)
		}, true},
		{"sticky world-writable root", func(t *testing.T, base string) string {
			return mkdirMode(t, filepath.Join(base, "models"), 0o777|os.ModeSticky)
		}, true},
		{"world-writable parent", func(t *testing.T, base string) string {
			mkdirMode(t, filepath.Join(base, "shared"), 0o777)
			return mkdirMode(t, filepath.Join(base, "shared", "models"), 0o755)
		}, true},
		{"world-writable grandparent", func(t *testing.T, base string) string {
			mkdirMode(t, filepath.Join(base, "shared"), 0o777)
			mkdirMode(t, filepath.Join(base, "shared", "x"), 0o755)
			return mkdirMode(t, filepath.Join(base, "shared", "x", "models"), 0o755)
		}, true},
		{"sticky world-writable parent, like /tmp", func(t *testing.T, base string) string {
			mkdirMode(t, filepath.Join(base, "tmp"), 0o777|os.ModeSticky)
			return mkdirMode(t, filepath.Join(base, "tmp", "models"), 0o755)
		}, false},
		{"symlink to a safe root, in a safe dir", func(t *testing.T, base string) string {
			real := mkdirMode(t, filepath.Join(base, "real"), 0o755)
			mustSymlink(t, real, filepath.Join(base, "models"))
			return filepath.Join(base, "models")
		}, false},
		{"symlink in a world-writable dir", func(t *testing.T, base string) string {
			real := mkdirMode(t, filepath.Join(base, "real"), 0o755)
			mkdirMode(t, filepath.Join(base, "shared"), 0o777)
			mustSymlink(t, real, filepath.Join(base, "shared", "models"))
			return filepath.Join(base, "shared", "models")
		}, true},
		{"symlink to a root under a world-writable dir", func(t *testing.T, base string) string {
			mkdirMode(t, filepath.Join(base, "shared"), 0o777)
			real := mkdirMode(t, filepath.Join(base, "shared", "real"), 0o755)
			mustSymlink(t, real, filepath.Join(base, "models"))
			return filepath.Join(base, "models")
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := tt.setup(t, t.TempDir())
			_, err := Open(Config{Root: root})
			if tt.refused {
				if !errors.Is(err, ErrUnsafe) {
					t.Fatalf("Open: got %v, want ErrUnsafe", err)
				}
				if !strings.Contains(err.Error(), "chmod") && !strings.Contains(err.Error(), "owned by") {
					t.Errorf("error does not say how to fix it: %v", err)
				}
				t.Logf("error: %v", err)
			} else if err != nil {
				t.Fatalf("Open: %v", err)
			}
		})
	}
}

// TestFetchRefusesDirOthersCanWrite: a model directory inside a safe root
// that others can write (made by hand with a loose umask) is not trusted
// either; the fetch fails, retryably (another node can serve the job),
// before any request.
func TestFetchRefusesDirOthersCanWrite(t *testing.T) {
	o := newOrigin(t)
	o.serveBytes("/w.gguf", []byte("weights"))
	for _, dir := range []string{"m", filepath.Join(metaDir, "locks", "m"), filepath.Join(metaDir, "verified", "m")} {
		t.Run(dir, func(t *testing.T) {
			s := openStore(t, testConfig(t))
			mkdirMode(t, filepath.Join(s.Root(), dir), 0o777)
			_, err := s.Fetch(context.Background(), "m", []File{{URL: o.URL + "/w.gguf", Filename: "w.gguf", SHA256: sha([]byte("weights"))}})
			var merr *Error
			if !errors.Is(err, ErrUnsafe) || !errors.As(err, &merr) || !merr.Retryable() {
				t.Fatalf("Fetch: got %v, want a retryable ErrUnsafe", err)
			}
		})
	}
	if n := o.total(); n != 0 {
		t.Errorf("requests: got %d, want 0", n)
	}
}

func mustSymlink(t testing.TB, target, link string) {
	t.Helper()
	mustMkdir(t, filepath.Dir(link))
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func mustMkdir(t testing.TB, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

// mkdirMode makes dir with exactly mode (umask aside) and returns it.
func mkdirMode(t testing.TB, dir string, mode os.FileMode) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
	return dir
}
