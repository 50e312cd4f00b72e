// Command fleet runs N stoker agents against one `stoker studio` on
// loopback, submits M jobs and prints what each node cost (see package
// fleet); the last line is "lost=L duplicates=D agents=N jobs=M".
// scripts/fleet.sh builds the binaries and runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/stokerhq/stoker/supervisor/internal/fleet"
)

func main() {
	agents := flag.Int("agents", 50, "agents to run")
	jobs := flag.Int("jobs", 1000, "jobs to submit")
	stoker := flag.String("stoker", "bin/stoker", "stoker `executable`")
	pluginDir := flag.String("plugin-dir", "", "`dir` holding synthetic-plugin (and nothing else)")
	workDir := flag.String("work-dir", "", "`dir` for the agents' state (default: a temporary one, removed)")
	timeout := flag.Duration("timeout", 20*time.Minute, "bound on the whole run")
	logFile := flag.String("log", "", "write the studio's and the agents' logs to this `file`")
	idle := flag.Duration("idle", 10*time.Second, "watch the idle fleet this long after the jobs, for the CPU heartbeats cost (0: not)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "fleet: unexpected arguments:", flag.Args())
		os.Exit(2)
	}
	if err := run(*agents, *jobs, *stoker, *pluginDir, *workDir, *timeout, *logFile, *idle); err != nil {
		fmt.Fprintln(os.Stderr, "fleet:", err)
		os.Exit(1)
	}
}

func run(agents, jobs int, stoker, pluginDir, workDir string, timeout time.Duration, logFile string, idle time.Duration) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if workDir == "" {
		dir, err := os.MkdirTemp("", "fleet-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		workDir = dir
	}
	if idle <= 0 {
		idle = -1 // RunConfig's 0 is the default
	}
	cfg := fleet.RunConfig{Jobs: jobs, Idle: idle, Config: fleet.Config{Stoker: stoker, PluginDir: pluginDir, Agents: agents, WorkDir: workDir}}
	if logFile != "" {
		f, err := os.Create(logFile)
		if err != nil {
			return err
		}
		defer f.Close()
		cfg.Log = f
	}
	rep, err := fleet.Run(ctx, cfg)
	if rep != nil {
		rep.Print(os.Stdout)
	}
	if err != nil {
		return err
	}
	if rep.Lost != 0 || rep.Duplicates != 0 || rep.Failed != 0 {
		return fmt.Errorf("lost %d, duplicated %d, failed %d", rep.Lost, rep.Duplicates, rep.Failed)
	}
	return nil
}
