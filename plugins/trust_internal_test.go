//go:build unix

package plugins

import (
	"errors"
	"io/fs"
	"syscall"
	"testing"
	"time"
)

// fakeInfo is a FileInfo with a chosen owner and mode.
type fakeInfo struct {
	mode fs.FileMode
	uid  uint32
}

func (f fakeInfo) Name() string       { return "x" }
func (f fakeInfo) Size() int64        { return 0 }
func (f fakeInfo) Mode() fs.FileMode  { return f.mode }
func (f fakeInfo) ModTime() time.Time { return time.Time{} }
func (f fakeInfo) IsDir() bool        { return f.mode.IsDir() }
func (f fakeInfo) Sys() any           { return &syscall.Stat_t{Uid: f.uid} }

// TestCheckEntry covers the owner rule, which a test cannot set up on disk
// without root.
func TestCheckEntry(t *testing.T) {
	const me = 1000
	tests := []struct {
		name   string
		fi     fakeInfo
		strict bool
		ok     bool
	}{
		{"mine", fakeInfo{0o755, me}, true, true},
		{"root's", fakeInfo{fs.ModeDir | 0o755, 0}, true, true},
		{"nobody's", fakeInfo{fs.ModeDir | 0o755, 65534}, false, false},
		{"nobody's file", fakeInfo{0o755, 65534}, true, false},
		{"group-writable", fakeInfo{0o775, me}, true, false},
		{"sticky ancestor", fakeInfo{fs.ModeDir | fs.ModeSticky | 0o777, 0}, false, true},
		{"sticky plugin dir", fakeInfo{fs.ModeDir | fs.ModeSticky | 0o777, 0}, true, false},
		{"link", fakeInfo{fs.ModeSymlink | 0o777, me}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkEntry("/p", tt.fi, me, tt.strict)
			if (err == nil) != tt.ok || err != nil && !errors.Is(err, ErrUntrusted) {
				t.Errorf("checkEntry = %v, want ok %v (or ErrUntrusted)", err, tt.ok)
			}
		})
	}
}
