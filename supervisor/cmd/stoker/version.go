package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/stokerhq/stoker/supervisor/internal/agent"
)

// Set at build time by scripts/build.sh and scripts/release.sh:
//
//	-ldflags "-X main.commit=<git commit> -X 'main.engineVersions=llama.cpp v0.4.0;whisper.cpp 1.9.3'"
var (
	// commit is the source's git commit ("" falls back to the one Go
	// stamped into the build, if any).
	commit string
	// engineVersions lists the engine libraries the plugins of this build
	// were built against, "name version" separated by ';'.
	engineVersions string
)

func version() string { return agent.Version }

// writeVersion prints the version, the commit, the Go version and the
// engines' versions.
func writeVersion(w io.Writer) error {
	rev, modified := commit, false
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision" && rev == "":
				rev = s.Value
			case s.Key == "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if rev == "" {
		rev = "unknown"
	} else if modified && commit == "" {
		rev += " (modified)"
	}
	fmt.Fprintf(w, "stoker %s\ncommit:  %s\ngo:      %s %s/%s\n", version(), rev, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	var engines []string
	for _, e := range strings.Split(engineVersions, ";") {
		if e = strings.TrimSpace(e); e != "" {
			engines = append(engines, e)
		}
	}
	if len(engines) == 0 {
		_, err := fmt.Fprintln(w, "engines: none recorded (built without scripts/build.sh or scripts/release.sh)")
		return err
	}
	fmt.Fprintln(w, "engines:")
	for _, e := range engines {
		fmt.Fprintf(w, "  %s\n", e)
	}
	return nil
}
