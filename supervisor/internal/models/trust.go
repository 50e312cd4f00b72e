package models

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/stokerhq/stoker/internal/pathtrust"
)

// The cache may be shared by several processes, but only root and the
// agent's own user may be able to change it. Anyone else who could write
// models_root (or a directory above it, which lets them swap models_root
// for a directory of their own) could plant a .part symlink the agent
// writes through, a lock symlink the agent creates a file through, or a
// model file it trusts. So:
//
//   - Open checks models_root and every directory above it up to "/"
//     (checkTree), and directories inside the root are checked each time
//     they are used (Store.dir);
//   - files inside are opened without following symlinks, and a .part or
//     lock that is not a plain file of its own is replaced, never written
//     through (openOwn, openRegular).

// checkTree returns an ErrUnsafe error when a user other than root and
// this process's could change what the directory p is: p itself must be
// owned by one of them and not writable by group or others; so must every
// directory above it, except that a sticky directory (such as /tmp) may be
// writable by all, since others cannot rename or remove what they do not
// own there. The check goes all the way to "/": whoever can rename any
// directory on the way can put a tree of their own in its place. A symlink
// on the way must be owned by root or this user, and its target is
// checked the same way. Access control lists are not looked at.
func checkTree(p string) error {
	sawLink, err := checkChain(p)
	if err != nil || !sawLink {
		return err
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return err
	}
	_, err = checkChain(real)
	return err
}

// checkChain checks every entry from "/" down to the absolute, clean path
// p, without following a symlink in the last component of each, and
// reports whether one was a symlink.
func checkChain(p string) (sawLink bool, err error) {
	chain := pathtrust.Chain(p)
	for i, q := range chain {
		fi, err := os.Lstat(q)
		if err != nil {
			return sawLink, err
		}
		if risk := statRisk(fi, i == len(chain)-1); risk != "" {
			return sawLink, unsafeError(q, risk)
		}
		sawLink = sawLink || fi.Mode()&os.ModeSymlink != 0
	}
	return sawLink, nil
}

// dirRisk says why a user other than root and euid could change what is
// at a path whose Lstat is (uid, mode): "" when none can. target is the
// directory the store writes into itself; an entry above it may be a
// sticky directory (like /tmp), where others may create names but may not
// rename or remove ours. A symlink's own mode bits mean nothing; its
// owner does (in a sticky directory, only its owner may replace it).
func dirRisk(uid uint32, mode os.FileMode, target bool, euid int) string {
	if !pathtrust.TrustedOwner(int(uid), euid) {
		return fmt.Sprintf("owned by uid %d", uid)
	}
	at := pathtrust.Above
	if target {
		at = pathtrust.Strict
	}
	switch {
	case mode&os.ModeSymlink != 0:
		return ""
	case !mode.IsDir():
		return "not a directory"
	case pathtrust.OthersCanWrite(mode, at):
		return fmt.Sprintf("writable by group or others (mode %s)", mode)
	}
	return ""
}

// statRisk is dirRisk for a FileInfo. Where fi has no owner to go by (off
// Unix), there is nothing to check: "".
func statRisk(fi os.FileInfo, target bool) string {
	uid, ok := pathtrust.Owner(fi)
	if !ok {
		return ""
	}
	return dirRisk(uint32(uid), fi.Mode(), target, os.Geteuid())
}

func unsafeError(p, risk string) error {
	fix := "run chmod go-w " + p
	if strings.HasPrefix(risk, "owned by") {
		fix = fmt.Sprintf("chown it to root or to uid %d, the agent's user", os.Geteuid())
	}
	return fmt.Errorf("%w: %s is %s, so another user could plant files the node would trust or write through; %s",
		ErrUnsafe, p, risk, fix)
}

// mkdirAll is os.MkdirAll, except that a directory it creates is never
// left writable by group or others, whatever the umask.
func mkdirAll(p string) error {
	fi, err := os.Stat(p)
	if err == nil {
		if !fi.IsDir() {
			return &fs.PathError{Op: "mkdir", Path: p, Err: errors.New("not a directory")}
		}
		return nil
	}
	if parent := filepath.Dir(p); parent != p {
		if err := mkdirAll(parent); err != nil {
			return err
		}
	}
	return mkdir(p)
}

// mkdir makes p (mode 0755 less the umask, and never group or other
// writable); an existing p is left as it is.
func mkdir(p string) error {
	err := os.Mkdir(p, 0o755)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return os.Chmod(p, perm&^0o022)
	}
	return nil
}

// safeDir returns <Root>/<parts...>, creating what is missing, after
// checking that each directory from the root down is one only root and
// this user can change (a symlink is followed and its target checked).
// Parts may hold separators.
func (s *Store) safeDir(parts ...string) (string, error) {
	p := s.root
	for _, part := range strings.Split(filepath.Join(parts...), string(filepath.Separator)) {
		p = filepath.Join(p, part)
		if err := mkdir(p); err != nil {
			return "", err
		}
		fi, err := os.Stat(p)
		if err != nil {
			return "", err
		}
		if risk := statRisk(fi, true); risk != "" {
			return "", unsafeError(p, risk)
		}
	}
	return p, nil
}

// openOwn opens (creating it if missing) the file p that the store alone
// writes — a .part or a lock file — without following a symlink. When p
// is not a plain file of its own — a symlink, a FIFO, or a hard link that
// shares its bytes with another name — it is removed (the thing it points
// to is left alone) and a fresh file created in its place.
func (s *Store) openOwn(p string) (*os.File, error) {
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|oNoFollow|oNonBlock, 0o644)
	var why string
	switch {
	case isSymlinkErr(err):
		why = "a symlink"
	case err != nil:
		return nil, err
	default:
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, err
		}
		switch {
		case !fi.Mode().IsRegular():
			why = "not a regular file"
		case linkCount(fi) > 1:
			why = "a hard link to another file"
		default:
			return f, nil
		}
		f.Close()
	}
	s.log.Warn("replacing a cache file that is not a plain file of its own", "path", p, "was", why)
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	f, err = os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL|oNoFollow, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%w: %s keeps being replaced: %w", ErrUnsafe, p, err)
	}
	return f, nil
}

// errNotRegular reports a path that is a symlink or not a regular file
// where the store wanted one to read.
var errNotRegular = errors.New("not a regular file")

// openRegular opens p for reading without following a symlink and without
// hanging on a FIFO, and returns it only if it is a regular file.
func openRegular(p string) (*os.File, os.FileInfo, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|oNoFollow|oNonBlock, 0)
	if isSymlinkErr(err) {
		return nil, nil, fmt.Errorf("%s: a symlink: %w", p, errNotRegular)
	}
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, fmt.Errorf("%s: %w", p, errNotRegular)
	}
	return f, fi, nil
}
