package engines

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/stokerhq/stoker/plugins"
)

// PluginSuffix ends the name of every engine plugin executable.
const PluginSuffix = "-plugin"

// Discover returns the plugin executables in dir: regular files whose name
// ends in "-plugin" and that are executable. It refuses (with an error) a
// directory or a plugin that another user could change, and a plugin that
// is a symbolic link (see plugins.CheckPath), since whoever can replace a
// plugin runs code as the supervisor.
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
		fi, err := os.Lstat(path)
		if err != nil {
			continue
		}
		if fi.Mode()&fs.ModeSymlink == 0 && (!fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0) {
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

// CheckPermissions refuses a plugin or plugin dir that users other than
// root and this process's user could change, or that is reached through a
// symbolic link (plugins.CheckPath). Launch checks again at every start.
func CheckPermissions(path string) error {
	if err := plugins.CheckPath(path); err != nil {
		return fmt.Errorf("engines: %w", err)
	}
	return nil
}
