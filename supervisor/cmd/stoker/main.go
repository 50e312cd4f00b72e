// Command stoker is the render-farm node supervisor.
//
//	stoker agent [-config FILE]          run the worker against a studio
//	stoker agent -dev                    run a dev studio and a worker on this machine
//	stoker studio [-listen ADDR]         run the dev studio alone
//	stoker register -reset               forget this worker's registration
//	stoker models list|prune             show or trim the model cache
//	stoker plugin check PATH             check a plugin executable's conformance
//	stoker version                       print the version
//
// main only parses flags, handles signals and turns errors into exit codes;
// the work is done by run and the packages it calls.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"syscall"
)

// gcPercent is the supervisor's GOGC unless the environment sets one. A
// node agent sits beside engines that want every byte of RAM, and its live
// heap is a few MiB: collecting at 1.5× instead of 2× keeps streamed
// results (64 MiB through in 512 KiB chunks) from piling up as garbage, for
// a CPU cost that does not show.
const gcPercent = 50

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	ctx, stop := signalContext()
	defer stop()
	// SIGHUP (systemctl reload, a closed terminal) never stops stoker: the
	// agent reloads what it can, every other command ignores it.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if err := run(ctx, os.Args[1:], stdio{out: os.Stdout, err: os.Stderr, hup: hup}); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "stoker:", err)
		}
		os.Exit(1)
	}
}

// signalContext returns a context cancelled by the first SIGINT or SIGTERM
// (the agent then drains); a second signal exits at once. The returned stop
// function ends the watch.
func signalContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	done := make(chan struct{})
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case <-ch:
			cancel()
		case <-done:
			return
		}
		// Not ctx.Done(): the first signal has just closed it.
		select {
		case s := <-ch:
			fmt.Fprintf(os.Stderr, "stoker: second %s; exiting now\n", s)
			os.Exit(2)
		case <-done:
		}
	}()
	var once sync.Once
	return ctx, func() {
		once.Do(func() {
			signal.Stop(ch)
			close(done)
			cancel()
		})
	}
}

const usage = `usage: stoker <command> [flags]

commands:
  agent      run the worker (-dev: with a dev studio on this machine)
  studio     run the dev studio alone
  register   manage this worker's registration (-reset)
  models     list or prune the model cache
  plugin     check a plugin executable's conformance (plugin check PATH)
  version    print the version
`

// stdio is what a command gets from the process besides its arguments.
type stdio struct {
	out, err io.Writer
	// hup delivers SIGHUP; nil (a test) never does.
	hup <-chan os.Signal
}

// run runs one stoker command.
func run(ctx context.Context, args []string, sio stdio) error {
	stdout, stderr := sio.out, sio.err
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "agent":
		return runAgent(ctx, rest, stderr, sio.hup)
	case "studio":
		return runStudio(ctx, rest, stderr, sio.hup)
	case "register":
		return runRegister(rest, stdout, stderr)
	case "models":
		return runModels(rest, stdout, stderr)
	case "plugin":
		return runPlugin(ctx, rest, stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "stoker", version())
		return nil
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}
