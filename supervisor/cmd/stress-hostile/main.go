// Command stress-hostile runs the hostile-peer kit (see package hostile)
// and prints a block per case; the last line is
// "node_crashes=C unbounded=U lost=L cases=N". scripts/stress-hostile.sh
// builds the binaries and runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/stokerhq/stoker/supervisor/internal/hostile"
)

func main() {
	stoker := flag.String("stoker", "bin/stoker", "stoker `executable`")
	pluginDir := flag.String("plugin-dir", "bin", "`dir` holding synthetic-plugin and faults-plugin")
	cases := flag.String("cases", "", "comma-separated case `names` (default: all)")
	scale := flag.Float64("scale", 1, "multiplies the cases' sizes (1: the issue's, e.g. 100,000 offers)")
	caseTimeout := flag.Duration("case-timeout", 3*time.Minute, "bound on one case")
	agentLog := flag.String("agent-log", "", "write the agents' logs to this `file`")
	list := flag.Bool("list", false, "list the cases and exit")
	flag.Parse()
	if *list {
		for _, c := range hostile.Cases() {
			fmt.Printf("%-26s %s\n", c.Name, c.What)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	cfg := hostile.Config{Stoker: *stoker, PluginDir: *pluginDir, Scale: *scale, CaseTimeout: *caseTimeout, Log: os.Stderr}
	if *cases != "" {
		cfg.Cases = strings.Split(*cases, ",")
	}
	if *agentLog != "" {
		f, err := os.Create(*agentLog)
		if err != nil {
			fmt.Fprintln(os.Stderr, "stress-hostile:", err)
			os.Exit(1)
		}
		defer f.Close()
		cfg.AgentLog = f
	}
	rep, err := hostile.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "stress-hostile:", err)
		os.Exit(1)
	}
	rep.Print(os.Stdout)
	if c, u, l := rep.Counts(); c+u+l > 0 {
		os.Exit(1)
	}
}
