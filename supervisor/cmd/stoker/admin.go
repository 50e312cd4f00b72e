package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/stokerhq/stoker/supervisor/internal/config"
	"github.com/stokerhq/stoker/supervisor/internal/models"
	"github.com/stokerhq/stoker/supervisor/internal/registration"
)

func runRegister(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("register", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "TOML config `file`")
	reset := fs.Bool("reset", false, "forget the install id, any pending request and the credentials")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(*configPath, os.Environ())
	if err != nil {
		return err
	}
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

func runModels(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "prune") {
		return fmt.Errorf("usage: stoker models list|prune [flags]")
	}
	fs := flag.NewFlagSet("models "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "TOML config `file`")
	olderThan := fs.Duration("older-than", 0, "prune: remove files unused for this long")
	maxBytes := fs.Int64("max-bytes", 0, "prune: then remove least recently used files down to this size")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	cfg, err := config.Load(*configPath, os.Environ())
	if err != nil {
		return err
	}
	store, err := models.Open(models.Config{Root: cfg.ModelsRoot})
	if err != nil {
		return err
	}
	var entries []models.Entry
	if args[0] == "prune" {
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
