package archtest

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/stokerhq/stoker"

// pkg is what `go list -json` says of one package.
type pkg struct {
	ImportPath string
	Name       string
	Deps       []string
}

// listPackages returns every package of the module by import path.
func listPackages(t *testing.T) map[string]pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	pkgs := map[string]pkg{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs[p.ImportPath] = p
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

// pluginDir says whether path is in an engine plugin's tree: a top-level
// directory named "<name>-plugin".
func pluginDir(path string) bool {
	rel, ok := strings.CutPrefix(path, module+"/")
	if !ok {
		return false
	}
	top, _, _ := strings.Cut(rel, "/")
	return strings.HasSuffix(top, "-plugin")
}

// TestMainPackages checks where programs live (docs/architecture.md): a
// main package is either an engine plugin's root, "<name>-plugin", or a
// supervisor program, "supervisor/cmd/<name>"; the SDK folder plugins/
// holds none.
func TestMainPackages(t *testing.T) {
	mains := 0
	for path, p := range listPackages(t) {
		if p.Name != "main" {
			continue
		}
		mains++
		rel := strings.TrimPrefix(path, module+"/")
		cmd, isCmd := strings.CutPrefix(rel, "supervisor/cmd/")
		switch {
		case pluginDir(path) && !strings.Contains(rel, "/"):
		case isCmd && cmd != "" && !strings.Contains(cmd, "/"):
		default:
			t.Errorf("main package %s is neither an engine plugin's root (<name>-plugin) nor supervisor/cmd/<name>", rel)
		}
	}
	if mains < 6 {
		t.Errorf("found only %d main packages", mains)
	}
}

func under(path, prefix string) bool {
	prefix = module + "/" + prefix
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

// TestDependencyRules checks the rules of the house (docs/architecture.md):
// the session never knows the engines and the host never knows the studio;
// plugins and the plugin SDK never reach into the supervisor; the wire
// contract depends on nothing of ours.
func TestDependencyRules(t *testing.T) {
	pkgs := map[string][]string{}
	for path, p := range listPackages(t) {
		pkgs[path] = p.Deps
	}
	rules := []struct {
		name      string
		applies   func(path string) bool
		forbidden []string // path prefixes within the module
		allowOnly []string // when set, module deps must be under one of these
		// isForbidden, if set, forbids the module deps it is true of;
		// alsoAllow, if set, allows the module deps it is true of beside
		// allowOnly.
		isForbidden, alsoAllow func(path string) bool
	}{
		{
			name:      "engine host knows nothing of the studio",
			applies:   func(p string) bool { return under(p, "supervisor/internal/engines") },
			forbidden: []string{"supervisor/internal/studio", "supervisor/internal/protocol", "supervisor/internal/jobs", "supervisor/internal/devstudio", "supervisor/internal/registration"},
		},
		{
			name: "studio session knows nothing of engines",
			applies: func(p string) bool {
				return under(p, "supervisor/internal/studio") || under(p, "supervisor/internal/registration")
			},
			forbidden: []string{"supervisor/internal/engines", "plugins", "supervisor/internal/jobs", "supervisor/internal/models", "proto"},
		},
		{
			name:      "the local API reads the agent through its own interfaces",
			applies:   func(p string) bool { return under(p, "supervisor/internal/localapi") },
			allowOnly: []string{"supervisor/internal/localapi", "supervisor/internal/httpguard"},
		},
		{
			name:      "the node's job slot stands alone",
			applies:   func(p string) bool { return under(p, "supervisor/internal/jobslot") },
			allowOnly: []string{"supervisor/internal/jobslot"},
		},
		{
			name:      "the local model catalog knows only the wire contract",
			applies:   func(p string) bool { return under(p, "supervisor/internal/localmodels") },
			allowOnly: []string{"supervisor/internal/localmodels", "supervisor/internal/protocol"},
		},
		{
			name:      "local jobs know nothing of HTTP, the studio session or the engine host",
			applies:   func(p string) bool { return under(p, "supervisor/internal/localjobs") },
			forbidden: []string{"supervisor/internal/studio", "supervisor/internal/engines", "supervisor/internal/jobs", "supervisor/internal/models", "supervisor/internal/localapi", "supervisor/internal/imageapi", "supervisor/internal/openaiapi", "supervisor/internal/agent"},
		},
		{
			name: "the local job routes reach the node only through local jobs",
			applies: func(p string) bool {
				return under(p, "supervisor/internal/imageapi") || under(p, "supervisor/internal/openaiapi")
			},
			forbidden: []string{"supervisor/internal/studio", "supervisor/internal/engines", "supervisor/internal/jobs", "supervisor/internal/models", "supervisor/internal/localapi", "supervisor/internal/agent"},
		},
		{
			name:      "the local job routes' HTTP plumbing stands alone",
			applies:   func(p string) bool { return under(p, "supervisor/internal/jobhttp") },
			allowOnly: []string{"supervisor/internal/jobhttp"},
		},
		{
			name:      "the watched child process stands alone",
			applies:   func(p string) bool { return under(p, "supervisor/internal/childproc") },
			allowOnly: []string{"supervisor/internal/childproc"},
		},
		{
			name:      "the HTTP guards stand alone",
			applies:   func(p string) bool { return under(p, "supervisor/internal/httpguard") },
			allowOnly: []string{"supervisor/internal/httpguard"},
		},
		{
			name:      "the dial guard stands alone",
			applies:   func(p string) bool { return under(p, "supervisor/internal/dialguard") },
			allowOnly: []string{"supervisor/internal/dialguard"},
		},
		{
			name:      "the path trust rules stand alone",
			applies:   func(p string) bool { return under(p, "internal/pathtrust") },
			allowOnly: []string{"internal/pathtrust"},
		},
		{
			name:      "the wire contract stands alone",
			applies:   func(p string) bool { return under(p, "supervisor/internal/protocol") },
			allowOnly: []string{"supervisor/internal/protocol"},
		},
		{
			name:      "the plugin SDK never reaches into the supervisor",
			applies:   func(p string) bool { return under(p, "plugins") || under(p, "proto") },
			forbidden: []string{"supervisor"},
		},
		{
			name:        "the plugin SDK holds no engine: it never imports a plugin",
			applies:     func(p string) bool { return under(p, "plugins") || under(p, "proto") },
			isForbidden: pluginDir,
		},
		{
			name:    "engine plugins use only the SDK, the contract and the plugins",
			applies: pluginDir,
			// internal/pathtrust comes with the SDK (plugins.CheckPath).
			allowOnly: []string{"plugins", "proto", "internal/pathtrust"},
			alsoAllow: pluginDir,
		},
	}
	for _, r := range rules {
		t.Run(r.name, func(t *testing.T) {
			checked := 0
			for path, deps := range pkgs {
				if !r.applies(path) {
					continue
				}
				checked++
				for _, d := range deps {
					if !strings.HasPrefix(d, module+"/") {
						continue
					}
					for _, f := range r.forbidden {
						if under(d, f) {
							t.Errorf("%s depends on %s", path, d)
						}
					}
					if r.isForbidden != nil && r.isForbidden(d) {
						t.Errorf("%s depends on %s", path, d)
					}
					if len(r.allowOnly) > 0 && !anyUnder(d, r.allowOnly) && (r.alsoAllow == nil || !r.alsoAllow(d)) {
						t.Errorf("%s depends on %s, outside %v", path, d, r.allowOnly)
					}
				}
			}
			if checked == 0 {
				t.Errorf("no package matched the rule")
			}
		})
	}
}

func anyUnder(path string, prefixes []string) bool {
	for _, p := range prefixes {
		if under(path, p) {
			return true
		}
	}
	return false
}
