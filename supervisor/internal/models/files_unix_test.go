//go:build unix

package models

import (
	"os"
	"testing"
)

// TestDirRisk covers the ownership rule, which a test run by one user
// cannot set up on disk: a directory owned by another user is unsafe
// whatever its mode, since its owner can chmod it.
func TestDirRisk(t *testing.T) {
	const me = 1000
	tests := []struct {
		name   string
		uid    uint32
		mode   os.FileMode
		target bool
		safe   bool
	}{
		{"mine, 0755", me, os.ModeDir | 0o755, true, true},
		{"root's, 0755", 0, os.ModeDir | 0o755, true, true},
		{"another user's, 0700", 1001, os.ModeDir | 0o700, true, false},
		{"another user's, above", 1001, os.ModeDir | 0o755, false, false},
		{"mine, group-writable", me, os.ModeDir | 0o775, true, false},
		{"root's sticky 1777 above, like /tmp", 0, os.ModeDir | os.ModeSticky | 0o777, false, true},
		{"root's sticky 1777 as the root itself", 0, os.ModeDir | os.ModeSticky | 0o777, true, false},
		{"world-writable above, not sticky", 0, os.ModeDir | 0o777, false, false},
		{"my symlink in a sticky dir", me, os.ModeSymlink | 0o777, false, true},
		{"another user's symlink", 1001, os.ModeSymlink | 0o777, false, false},
		{"a file where a directory should be", me, 0o644, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			risk := dirRisk(tt.uid, tt.mode, tt.target, me)
			if (risk == "") != tt.safe {
				t.Errorf("dirRisk(uid %d, %s, target=%v): got %q, want safe=%v", tt.uid, tt.mode, tt.target, risk, tt.safe)
			}
		})
	}
}
