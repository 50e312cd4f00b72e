package main

import (
	"context"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/stokerhq/stoker/supervisor/internal/models"
	"github.com/stokerhq/stoker/supervisor/internal/registration"
)

func runRegister(args []string, sio stdio) error {
	fs := newFlagSet("register", "", "Shows where this worker's registration stands (phase, install id, request id, worker id); -reset forgets it.")
	cf := addConfigFlags(fs)
	reset := fs.Bool("reset", false, "forget the install id, any pending request and the credentials")
	if err := parseFlags(fs, args, sio, 0, configHint); err != nil {
		return err
	}
	cfg, _, err := cf.load()
	if err != nil {
		return err
	}
	stdout := sio.out
	if *reset {
		if err := registration.Reset(cfg.StateDir); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "registration reset; the next `stoker agent` asks the studio for approval again")
		return nil
	}
	st, err := registration.Load(cfg.StateDir)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "phase:      %s\ninstall id: %s\n", st.Phase, st.InstallID)
	if st.RequestID != "" {
		fmt.Fprintf(stdout, "request id: %s (ask the studio operator to approve it)\n", st.RequestID)
	}
	if st.WorkerID != "" {
		fmt.Fprintf(stdout, "worker id:  %s\n", st.WorkerID)
	}
	if st.RejectReason != "" {
		fmt.Fprintf(stdout, "rejected:   %s\n", st.RejectReason)
	}
	return nil
}

const modelsUsage = `usage: stoker models list|prune|pull [flags]

  list   show the files of the model cache
  prune  remove files unused for a while, or down to a size
  pull   download the models of a model list into the cache (pre-warm a node)

"stoker models <subcommand> -h" prints its flags.
`

func runModels(ctx context.Context, args []string, sio stdio) error {
	if len(args) == 0 {
		fmt.Fprint(sio.err, modelsUsage)
		return usageErrorf("models: no subcommand (list, prune or pull)")
	}
	switch args[0] {
	case "list", "prune":
		return runModelsListPrune(args[0], args[1:], sio)
	case "pull":
		return runModelsPull(ctx, args[1:], sio)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(sio.out, modelsUsage)
		return errHelp
	}
	fmt.Fprint(sio.err, modelsUsage)
	return usageErrorf("models: unknown subcommand %q (list, prune or pull)", args[0])
}

func runModelsListPrune(sub string, args []string, sio stdio) error {
	what := "Lists the model cache's files: model, file, size, last use, and whether in use, partial or legacy."
	if sub == "prune" {
		what = "Removes files unused for -older-than, then the least recently used down to -max-bytes. Files in use are kept."
	}
	fs := newFlagSet("models "+sub, "", what)
	cf := addConfigFlags(fs)
	var olderThan *time.Duration
	var maxBytes *int64
	if sub == "prune" {
		olderThan = fs.Duration("older-than", 0, "remove files unused for this long")
		maxBytes = fs.Int64("max-bytes", 0, "then remove least recently used files down to this size")
	}
	if err := parseFlags(fs, args, sio, 0, configHint); err != nil {
		return err
	}
	cfg, _, err := cf.load()
	if err != nil {
		return err
	}
	store, err := models.Open(models.Config{Root: cfg.ModelsRoot})
	if err != nil {
		return err
	}
	var entries []models.Entry
	stdout := sio.out
	if sub == "prune" {
		if *olderThan == 0 && *maxBytes == 0 {
			return fmt.Errorf("models prune: give -older-than and/or -max-bytes")
		}
		entries, err = store.Prune(models.PruneOptions{OlderThan: *olderThan, MaxBytes: *maxBytes})
		fmt.Fprintf(stdout, "removed %d file(s):\n", len(entries))
	} else {
		entries, err = store.List()
	}
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MODEL\tFILE\tSIZE\tLAST USED\tSTATE")
	for _, e := range entries {
		state := ""
		switch {
		case e.InUse:
			state = "in use"
		case e.Partial:
			state = "partial"
		case e.Legacy:
			state = "legacy"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", e.Model, e.Name, e.Size, e.LastUsed.Format(time.RFC3339), state)
	}
	return tw.Flush()
}

// isTerminal reports whether w is a terminal.
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
