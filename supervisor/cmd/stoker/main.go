// Command stoker is the render-farm node supervisor.
//
//	stoker agent [-config FILE]          run the worker against a studio
//	stoker agent -dev                    run a dev studio and a worker on this machine
//	stoker studio [-listen ADDR]         run the dev studio alone
//	stoker register -reset               forget this worker's registration
//	stoker config validate|print         check the config, or print it with each value's origin
//	stoker models list|prune|pull        show, trim or pre-fill the model cache
//	stoker ps                            the models each plugin of the running agent holds
//	stoker plugin check PATH             check a plugin executable's conformance
//	stoker completion bash|zsh           a shell completion script
//	stoker version                       print the version, commit, Go and engine versions
//
// main only parses flags, handles signals and turns errors into exit codes;
// the work is done by run and the packages it calls.
package main

import (
	"context"
	"errors"
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
		switch {
		case errors.Is(err, errHelp):
			// -h: the usage went to stdout.
			return
		case errors.Is(err, errUsage):
			// The usage and what was wrong went to stderr.
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "stoker:", err)
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
  agent       run the worker (-dev: with a dev studio on this machine)
  studio      run the dev studio alone
  register    show or reset this worker's registration
  config      validate the config, or print it with where each value came from
  models      list, prune or pull (pre-fill) the model cache
  ps          list the models the running agent's plugins hold in memory
  plugin      check a plugin executable's conformance (plugin check PATH)
  completion  print a bash or zsh completion script
  version     print the version, commit, Go version and engine versions

"stoker <command> -h" prints a command's flags.
`

// stdio is what a command gets from the process besides its arguments.
type stdio struct {
	out, err io.Writer
	// hup delivers SIGHUP; nil (a test) never does.
	hup <-chan os.Signal
}

// run runs one stoker command.
func run(ctx context.Context, args []string, sio stdio) error {
	if len(args) == 0 {
		fmt.Fprint(sio.err, usage)
		return usageErrorf("no command given")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "agent":
		return runAgent(ctx, rest, sio)
	case "studio":
		return runStudio(ctx, rest, sio)
	case "register":
		return runRegister(rest, sio)
	case "config":
		return runConfig(rest, sio)
	case "models":
		return runModels(ctx, rest, sio)
	case "ps":
		return runPS(ctx, rest, sio)
	case "plugin":
		return runPlugin(ctx, rest, sio)
	case "completion":
		return runCompletion(rest, sio)
	case "version", "-version", "--version":
		if err := parseFlags(newFlagSet("version", "", "print the version, the commit, the Go version and the engine versions built in"), rest, sio, 0, ""); err != nil {
			return err
		}
		return writeVersion(sio.out)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(sio.out, usage)
		return errHelp
	}
	fmt.Fprint(sio.err, usage)
	return usageErrorf("unknown command %q", cmd)
}
