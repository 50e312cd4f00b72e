package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/supervisor/internal/config"
)

var (
	// errHelp: -h was given and the usage went to stdout; the process
	// exits 0.
	errHelp = errors.New("help requested")
	// errUsage: the command line was wrong; what was wrong and the usage
	// went to stderr, and the process exits 2.
	errUsage = errors.New("usage error")
)

// usageError is a command-line mistake, already explained on stderr.
type usageError struct{ msg string }

func (e *usageError) Error() string        { return e.msg }
func (e *usageError) Is(target error) bool { return target == errUsage }

func usageErrorf(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// newFlagSet returns the flag set of the command "stoker <name>", whose
// usage shows synopsis ("[flags] PATH", …) and what the command does.
func newFlagSet(name, synopsis, what string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		w := fs.Output()
		if synopsis != "" {
			synopsis = " " + synopsis
		}
		fmt.Fprintf(w, "usage: stoker %s [flags]%s\n\n%s\n", name, synopsis, what)
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprintf(w, "\nflags:\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parseFlags parses args into fs. -h prints the usage to stdout and
// returns errHelp; a bad flag is explained with the usage on stderr. More
// than maxArgs positional arguments are refused (maxArgs < 0: any number),
// with hint added to the message when it is not "".
func parseFlags(fs *flag.FlagSet, args []string, sio stdio, maxArgs int, hint string) error {
	var buf bytes.Buffer
	fs.SetOutput(&buf)
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(sio.out)
		fs.Usage()
		return errHelp
	case err != nil:
		io.Copy(sio.err, &buf)
		return usageErrorf("%s: %v", fs.Name(), err)
	}
	fs.SetOutput(sio.err)
	if maxArgs >= 0 && fs.NArg() > maxArgs {
		extra := fs.Args()[maxArgs:]
		msg := fmt.Sprintf("stoker %s: unexpected argument %q", fs.Name(), extra[0])
		if len(extra) > 1 {
			msg = fmt.Sprintf("stoker %s: unexpected arguments %q", fs.Name(), extra)
		}
		// A flag after the first argument is not parsed either: say so.
		if i := slices.IndexFunc(extra, func(a string) bool { return strings.HasPrefix(a, "-") }); i >= 0 {
			msg += fmt.Sprintf(" (flags go before arguments: %q was not read as a flag)", extra[i])
		}
		if hint != "" {
			msg += "; " + hint
		}
		fmt.Fprintln(sio.err, msg)
		fs.Usage()
		return usageErrorf("%s", msg)
	}
	return nil
}

// configFlags are the flags of every command that reads the config.
type configFlags struct {
	path string
	set  stringList
}

// configHint is the message for a config file given as an argument.
const configHint = "give the config file with -config FILE"

func addConfigFlags(fs *flag.FlagSet) *configFlags {
	c := &configFlags{}
	fs.StringVar(&c.path, "config", "", "TOML config `file` (keys may also be set as STOKER_<KEY> variables)")
	fs.Var(&c.set, "set", "set a config `key=value` over the file and the environment (repeatable; lists and maps written as in STOKER_<KEY>)")
	return c
}

// load loads the config with its origins.
func (c *configFlags) load() (*config.Config, config.Origins, error) {
	return config.LoadWithOrigins(c.path, os.Environ(), c.set)
}

// ignoredEnv returns the names of the STOKER_ variables of env that are
// neither one of the agent's settings nor passed to its plugins (by
// plugins.PassEnv or plugin_env): most likely a misspelt key.
func ignoredEnv(env []string, cfg *config.Config) []string {
	passed := map[string]bool{}
	for _, kv := range plugins.Env(env, cfg.PluginEnv) {
		name, _, _ := strings.Cut(kv, "=")
		passed[name] = true
	}
	var out []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, config.EnvPrefix) && !config.IsSetting(name) && !passed[name] {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// ignoredEnvMessage says what ignoredEnv found, or "" when nothing.
func ignoredEnvMessage(names []string) string {
	if len(names) == 0 {
		return ""
	}
	return fmt.Sprintf("environment variables %s are not settings of stoker (STOKER_<KEY> for a config key) nor passed to plugins; ignored — a misspelt key?", strings.Join(names, ", "))
}
