package faults

import (
	"fmt"
	"os"
	"time"
)

// ApplyStart applies the start-up faults of EnvStart and EnvCgroup. The
// plugin's main calls it before plugins.Serve; it returns an error only for
// a malformed setting.
func ApplyStart(env func(string) string) error {
	if dir := env(EnvCgroup); dir != "" {
		if err := joinCgroup(dir); err != nil {
			return fmt.Errorf("faults: join cgroup %s: %w", dir, err)
		}
	}
	start := startFault(env, EnvStart)
	f := ParseFault(start)
	switch f.Name {
	case "":
	case "slow":
		d, err := time.ParseDuration(f.Arg)
		if err != nil {
			return fmt.Errorf("faults: %s=slow=%q: %w", EnvStart, f.Arg, err)
		}
		time.Sleep(d) // the fault itself: a plugin that is slow to start
	case "linger":
		// Serve applies it: the process outlives go-plugin's Shutdown.
	case "garbage":
		fmt.Fprintln(os.Stdout, "this is not the go-plugin handshake line")
	case "exit":
		fmt.Fprintln(os.Stderr, "faults: exiting before serving, as asked")
		os.Exit(1)
	default:
		return fmt.Errorf("faults: unknown %s %q", EnvStart, start)
	}
	return nil
}
