package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/plugins/plugintest"
)

const pluginUsage = `usage: stoker plugin check [flags] PATH [ARGS...]

Launches the plugin executable at PATH as the agent does (handshake, mutual
TLS, the allow-listed environment) and checks that it conforms to the engine
contract: one PASS or FAIL line per check, with its reason. Exits non-zero
when a check fails.

flags:
`

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func runPlugin(ctx context.Context, args []string, sio stdio) error {
	stdout, stderr := sio.out, sio.err
	if len(args) == 1 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		fmt.Fprint(stdout, strings.TrimSuffix(pluginUsage, "\nflags:\n"), "\n\"stoker plugin check -h\" prints its flags.\n")
		return errHelp
	}
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprint(stderr, pluginUsage)
		return usageErrorf("usage: stoker plugin check [flags] PATH")
	}
	fs := flag.NewFlagSet("plugin check", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), pluginUsage)
		fs.PrintDefaults()
	}
	startTimeout := fs.Duration("start-timeout", 10*time.Second, "bound on the handshake")
	jobTimeout := fs.Duration("job-timeout", 2*time.Minute, "bound on Describe and on each sample job")
	cancelTimeout := fs.Duration("cancel-timeout", plugintest.CancelBound, "bound on a cancelled job's return")
	model := fs.String("model", "", "model `id` of the sample jobs (default \"conformance\")")
	var files, env stringList
	fs.Var(&files, "model-file", "`ROLE=PATH` of a model file every sample job carries (repeatable), to check an engine on a real model")
	fs.Var(&env, "env", "`NAME=VALUE` added to the plugin's environment (repeatable); it also gets the allow-listed part of this one's")
	verbose := fs.Bool("v", false, "copy the plugin's stderr to this command's stderr")
	if err := parseFlags(fs, args[1:], sio, -1, ""); err != nil {
		return err
	}
	if fs.NArg() < 1 {
		fs.Usage()
		return usageErrorf("plugin check: no plugin PATH")
	}
	opt := plugintest.PluginOptions{
		Options: plugintest.Options{
			Model: *model, CallBound: *jobTimeout, CancelBound: *cancelTimeout,
		},
		Env:          append(plugins.Env(os.Environ(), nil), env...),
		Args:         fs.Args()[1:],
		StartTimeout: *startTimeout,
	}
	for _, f := range files {
		role, path, ok := strings.Cut(f, "=")
		if !ok || role == "" || path == "" {
			return fmt.Errorf("plugin check: -model-file %q: want ROLE=PATH", f)
		}
		opt.Files = append(opt.Files, plugins.ModelFile{Role: role, Path: path})
	}
	for _, kv := range env {
		if name, _, ok := strings.Cut(kv, "="); !ok || name == "" {
			return fmt.Errorf("plugin check: -env %q: want NAME=VALUE", kv)
		}
	}
	if *verbose {
		opt.Stderr = stderr
	}
	path := fs.Arg(0)
	fmt.Fprintf(stdout, "checking %s\n", path)
	rep := plugintest.CheckPlugin(ctx, path, opt)
	if _, err := rep.WriteTo(stdout); err != nil {
		return err
	}
	if !rep.OK() {
		return fmt.Errorf("plugin check: %s does not conform (%d failed)", path, len(rep.Failed()))
	}
	return nil
}
