package engines

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// PluginSuffix ends the name of every engine plugin executable.
const PluginSuffix = "-plugin"

// Discover returns the plugin executables in dir: regular files whose name
// ends in "-plugin" and that are executable. It refuses a directory or a
// plugin that others may write to, since whoever can replace a plugin runs
// code as the supervisor.
func Discover(dir string) ([]string, error) {
	if err := CheckPermissions(dir); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("engines: plugin dir: %w", err)
	}
	var out []string
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), PluginSuffix) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		fi, err := os.Stat(path)
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			continue
		}
		if err := CheckPermissions(path); err != nil {
			return nil, err
		}
		out = append(out, path)
	}
	slices.Sort(out)
	return out, nil
}

// CheckPermissions refuses a path that users other than its owner may
// write to (group- or world-writable).
func CheckPermissions(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("engines: %w", err)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("engines: refusing %s: it is writable by group or others (mode %s); run chmod go-w on it", path, fi.Mode().Perm())
	}
	return nil
}
