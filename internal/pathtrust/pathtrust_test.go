package pathtrust

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestChain(t *testing.T) {
	root := filepath.VolumeName(os.TempDir()) + string(filepath.Separator)
	a := filepath.Join(root, "opt")
	b := filepath.Join(a, "stoker")
	tests := []struct {
		name string
		p    string
		want []string
	}{
		{"the root", root, []string{root}},
		{"one down", a, []string{root, a}},
		{"two down", b, []string{root, a, b}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Chain(tt.p); !slices.Equal(got, tt.want) {
				t.Errorf("Chain(%q): got %q, want %q", tt.p, got, tt.want)
			}
		})
	}
}

func TestTrustedOwner(t *testing.T) {
	const me = 1000
	tests := []struct {
		name string
		uid  int
		want bool
	}{
		{"root", 0, true},
		{"this user", me, true},
		{"another user", 1001, false},
		{"nobody", 65534, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := TrustedOwner(tt.uid, me); got != tt.want {
				t.Errorf("TrustedOwner(%d, %d): got %v, want %v", tt.uid, me, got, tt.want)
			}
		})
	}
}

func TestOthersCanWrite(t *testing.T) {
	tests := []struct {
		name string
		mode fs.FileMode
		at   Place
		want bool
	}{
		{"0755 above", fs.ModeDir | 0o755, Above, false},
		{"0755 strict", fs.ModeDir | 0o755, Strict, false},
		{"0700 strict", fs.ModeDir | 0o700, Strict, false},
		{"group-writable above", fs.ModeDir | 0o775, Above, true},
		{"other-writable strict", fs.ModeDir | 0o757, Strict, true},
		{"world-writable above, not sticky", fs.ModeDir | 0o777, Above, true},
		{"sticky 1777 above, like /tmp", fs.ModeDir | fs.ModeSticky | 0o777, Above, false},
		{"sticky 1777 strict", fs.ModeDir | fs.ModeSticky | 0o777, Strict, true},
		{"group-writable file", 0o664, Strict, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := OthersCanWrite(tt.mode, tt.at); got != tt.want {
				t.Errorf("OthersCanWrite(%s, %v): got %v, want %v", tt.mode, tt.at, got, tt.want)
			}
		})
	}
}

// TestOwner: a file this test made is owned by this process's user where
// there are owners at all.
func TestOwner(t *testing.T) {
	fi, err := os.Stat(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	uid, ok := Owner(fi)
	if ok && uid != os.Geteuid() {
		t.Errorf("Owner: got uid %d, want %d (this process's)", uid, os.Geteuid())
	}
}
