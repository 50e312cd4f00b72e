package plugins

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/stokerhq/stoker/internal/pathtrust"
)

// Whoever can replace a plugin's file runs code as the supervisor, and
// often as root. So a plugin is run only from a path nobody else can
// change: CheckPath refuses one where another user could, and Launch
// executes the very file it checked and hashed (see openPlugin).

// ErrUntrusted is wrapped by the errors of CheckPath and Launch that refuse
// a plugin path another user could change.
var ErrUntrusted = errors.New("plugin path not trusted")

// CheckPath refuses a plugin file or plugin directory at path unless
// nobody but root and this process's user can change what it names:
//   - path and every directory above it is owned by root or by the
//     effective user of this process;
//   - path and its parent directory are writable by neither group nor
//     others; a directory further up may be, only if it has the sticky bit
//     (as /tmp has: others may add entries there, but not rename or remove
//     ours);
//   - no component of path is a symbolic link: a link is one more path to
//     check and one more place to swap, and a plugin dir is configured once,
//     so give its real path.
//
// path is made absolute first. The errors wrap ErrUntrusted (or the
// file system's error).
func CheckPath(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("plugin path %s: %w", path, err)
	}
	chain := pathtrust.Chain(abs)
	euid := os.Geteuid()
	for i, p := range chain {
		fi, err := os.Lstat(p)
		if err != nil {
			return fmt.Errorf("plugin path: %w", err)
		}
		// The last entry is path itself, the one before it its parent.
		if err := checkEntry(p, fi, euid, i >= len(chain)-2); err != nil {
			return err
		}
	}
	return nil
}

// checkEntry applies CheckPath's rules to one path component; strict is
// set for the plugin (or plugin dir) and its parent, which may not be
// writable by others even with the sticky bit.
func checkEntry(p string, fi fs.FileInfo, euid int, strict bool) error {
	if fi.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("%w: refusing %s: it is a symbolic link; give the real path", ErrUntrusted, p)
	}
	if uid, ok := pathtrust.Owner(fi); ok && !pathtrust.TrustedOwner(uid, euid) {
		return fmt.Errorf("%w: refusing %s: it is owned by uid %d, neither root nor this process's user (uid %d), who could replace what runs as this process", ErrUntrusted, p, uid, euid)
	}
	at := pathtrust.Above
	if strict {
		at = pathtrust.Strict
	}
	if pathtrust.OthersCanWrite(fi.Mode(), at) {
		return fmt.Errorf("%w: refusing %s: it is writable by group or others (mode %s); run chmod go-w on it", ErrUntrusted, p, fi.Mode())
	}
	return nil
}

// openPlugin opens the plugin executable at path for Launch, once: the
// path is checked (CheckPath), the file opened without following a
// symbolic link, and the open file checked again (a regular, executable
// file with the same rules). Launch hashes this file for a pin and
// executes this same file (through /proc/self/fd on Linux), so the bytes
// checked and hashed are the bytes that run even if the name is swapped
// in between. The caller closes the file.
func openPlugin(path string) (*os.File, error) {
	if err := CheckPath(path); err != nil {
		return nil, err
	}
	f, err := openNoFollow(path)
	if err != nil {
		return nil, fmt.Errorf("open plugin: %w", err)
	}
	fi, err := f.Stat()
	if err == nil {
		switch {
		case !fi.Mode().IsRegular():
			err = fmt.Errorf("%w: refusing %s: not a regular file", ErrUntrusted, path)
		case fi.Mode().Perm()&0o111 == 0:
			err = fmt.Errorf("refusing %s: not executable (mode %s)", path, fi.Mode())
		default:
			err = checkEntry(path, fi, os.Geteuid(), true)
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// isScript reports whether the open executable starts with "#!": the
// kernel hands a script's path to its interpreter, which must then be
// able to open it after exec (see process.go).
func isScript(f *os.File) bool {
	var b [2]byte
	n, _ := f.ReadAt(b[:], 0)
	return n == 2 && string(b[:]) == "#!"
}

// hashFile writes the open file, from its start, to h.
func hashFile(f *os.File, h io.Writer) error {
	_, err := io.Copy(h, io.NewSectionReader(f, 0, 1<<62))
	return err
}
