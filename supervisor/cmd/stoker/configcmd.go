package main

import (
	"fmt"
	"os"
)

const configUsage = `usage: stoker config validate|print [flags]

  validate  load the config as the agent would (file, STOKER_<KEY> variables, -set) and report what is wrong
  print     print the effective config as TOML, each key with where its value came from
            (default, file, env or flag); secrets print as "(redacted)"

"stoker config <subcommand> -h" prints its flags.
`

func runConfig(args []string, sio stdio) error {
	if len(args) == 0 {
		fmt.Fprint(sio.err, configUsage)
		return usageErrorf("config: no subcommand (validate or print)")
	}
	sub := args[0]
	switch sub {
	case "validate", "print":
	case "-h", "-help", "--help", "help":
		fmt.Fprint(sio.out, configUsage)
		return errHelp
	default:
		fmt.Fprint(sio.err, configUsage)
		return usageErrorf("config: unknown subcommand %q (validate or print)", sub)
	}
	what := "Loads the config as the agent would and says whether it is valid; exits 1 with every problem when not."
	if sub == "print" {
		what = "Prints the effective config as TOML, each key with where its value came from (default, file, env, flag);\nsecrets print as \"(redacted)\"."
	}
	fs := newFlagSet("config "+sub, "", what)
	cf := addConfigFlags(fs)
	if err := parseFlags(fs, args[1:], sio, 0, configHint); err != nil {
		return err
	}
	cfg, origins, err := cf.load()
	if err != nil {
		return err
	}
	if msg := ignoredEnvMessage(ignoredEnv(os.Environ(), cfg)); msg != "" {
		fmt.Fprintln(sio.err, "warning:", msg)
	}
	if sub == "print" {
		return cfg.Write(sio.out, origins)
	}
	src := "defaults and environment"
	if cf.path != "" {
		src = cf.path
	}
	fmt.Fprintf(sio.out, "config ok: %s (state_dir %s, studio %s)\n", src, cfg.StateDir, cfg.APIBaseURL)
	return nil
}
