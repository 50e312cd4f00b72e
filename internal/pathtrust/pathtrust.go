// Package pathtrust holds the rules for "nobody but root and this
// process's user can change what this path names": the entries to check,
// from "/" down; whose owner is trusted; and when a write bit lets another
// user add, rename or remove entries. It decides nothing else: which
// entries are held strictly, what a symbolic link means and what the
// error says are the caller's policy (plugins.CheckPath refuses links and
// holds a plugin and its directory strictly; the model store follows links
// and holds only its root strictly). It imports nothing of ours, and any
// package of the module may import it.
package pathtrust

import (
	"io/fs"
	"path/filepath"
)

// Chain returns every entry from the root down to p, the root first:
// "/", "/opt", "/opt/stoker" for "/opt/stoker". Whoever can rename any of
// them can put a tree of their own in p's place. p must be absolute and
// clean (as filepath.Abs returns it).
func Chain(p string) []string {
	var chain []string
	for q := p; ; q = filepath.Dir(q) {
		chain = append(chain, q)
		if filepath.Dir(q) == q {
			break
		}
	}
	for i, j := 0, len(chain)-1; i < j; i, j = i+1, j-1 {
		chain[i], chain[j] = chain[j], chain[i]
	}
	return chain
}

// TrustedOwner reports whether an entry owned by uid is one only root and
// the user euid can change: its owner can always chmod it.
func TrustedOwner(uid, euid int) bool {
	return uid == 0 || uid == euid
}

// Place says where an entry sits on a Chain, which decides whether a
// sticky bit excuses its write bits.
type Place int

const (
	// Above is a directory above what is checked. Group or others may
	// write it only if it is sticky (as /tmp is): there they may add
	// names, but not rename or remove ours.
	Above Place = iota
	// Strict is what is checked, and whatever else the caller holds as
	// strictly: group or others may not write it, sticky or not.
	Strict
)

// OthersCanWrite reports whether mode lets group or others change the
// entry at place: a group or other write bit, not excused by the sticky
// bit (see Place). The mode bits of a symbolic link mean nothing; the
// caller decides what a link is.
func OthersCanWrite(mode fs.FileMode, at Place) bool {
	return mode.Perm()&0o022 != 0 && (at == Strict || mode&fs.ModeSticky == 0)
}
