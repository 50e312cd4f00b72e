// Command stress-crash runs the crash-isolation stress run (see package
// stresscrash) and prints its table; the last line is
// "lost=L duplicates=D supervisor_crashes=S jobs=N". scripts/stress-crash.sh
// builds the binaries and runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/stokerhq/stoker/supervisor/internal/stresscrash"
)

func main() {
	n := flag.Int("n", 500, "jobs to run")
	rate := flag.Float64("fault-rate", 0.2, "share of jobs that inject a fault")
	seed := flag.Uint64("seed", 1, "job mix seed")
	stoker := flag.String("stoker", "bin/stoker", "stoker `executable`")
	pluginDir := flag.String("plugin-dir", "bin", "`dir` holding faults-plugin and synthetic-plugin")
	timeout := flag.Duration("timeout", 30*time.Minute, "bound on the whole run")
	noImages := flag.Bool("no-images", false, "only JSON (llm) jobs: no binary uploads")
	agentLog := flag.String("agent-log", "", "write the agent's log to this `file`")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	cfg := stresscrash.Config{N: *n, FaultRate: *rate, Seed: *seed, Stoker: *stoker, PluginDir: *pluginDir, Timeout: *timeout, NoImages: *noImages}
	if *agentLog != "" {
		f, err := os.Create(*agentLog)
		if err != nil {
			fmt.Fprintln(os.Stderr, "stress-crash:", err)
			os.Exit(1)
		}
		defer f.Close()
		cfg.AgentLog = f
	}
	rep, err := stresscrash.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "stress-crash:", err)
		os.Exit(1)
	}
	rep.Print(os.Stdout)
	if rep.Lost != 0 || rep.Duplicates != 0 || rep.SupervisorCrashes != 0 {
		os.Exit(1)
	}
}
