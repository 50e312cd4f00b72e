package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/stokerhq/stoker/supervisor/internal/agent"
	"github.com/stokerhq/stoker/supervisor/internal/devstudio"
	"github.com/stokerhq/stoker/supervisor/internal/jobs"
	"github.com/stokerhq/stoker/supervisor/internal/models"
)

// runModelsPull downloads the models of a model list into the cache, through
// the model store the agent's jobs use (the same layout, locks, URL policy,
// size and SHA-256 checks), so that the first job of each finds it there.
func runModelsPull(ctx context.Context, args []string, sio stdio) error {
	fs := newFlagSet("models pull", "-list FILE [MODEL...]",
		"Downloads the files of the models in a model list (all of them, or the MODELs named) into the model cache,\n"+
			"verified as a job's are, so that the first job of each finds them there. The list is a JSON object mapping\n"+
			"model ids to their model source (engine, files, cliDefaults), the format of the studio's catalog\n"+
			"(stoker studio -catalog). Run it as the agent's user. A progress bar on a terminal, plain lines otherwise.")
	cf := addConfigFlags(fs)
	list := fs.String("list", "", "model list `file` (JSON: model id -> model source)")
	if err := parseFlags(fs, args, sio, -1, ""); err != nil {
		return err
	}
	if *list == "" {
		fmt.Fprintln(sio.err, "stoker models pull: no -list FILE")
		fs.Usage()
		return usageErrorf("models pull: no -list FILE")
	}
	cfg, _, err := cf.load()
	if err != nil {
		return err
	}
	cat, err := devstudio.LoadCatalog(*list)
	if err != nil {
		return err
	}
	ids := fs.Args()
	if len(ids) == 0 {
		ids = cat.IDs()
	}
	// Every named model checked before anything is downloaded.
	for _, id := range ids {
		if _, ok := cat.Get(id); !ok {
			return fmt.Errorf("models pull: %q is not in %s (it has %s)", id, *list, strings.Join(cat.IDs(), ", "))
		}
	}
	bar := newProgressWriter(sio.err, isTerminal(sio.err))
	scfg := agent.ModelStoreConfig(cfg, hclog.NewNullLogger())
	scfg.OnProgress = bar.update
	scfg.ProgressInterval = bar.interval()
	store, err := models.Open(scfg)
	if err != nil {
		return err
	}
	defer store.CloseIdleConnections()
	var failed []string
	pulled := 0
	for _, id := range ids {
		e, _ := cat.Get(id)
		files := jobs.ModelFiles(&e.Source)
		if len(files) == 0 {
			continue // the synthetic models, and any other without files
		}
		bar.start(id)
		locals, err := store.Fetch(ctx, id, files)
		bar.done()
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("models pull: interrupted: %w", err)
			}
			fmt.Fprintf(sio.err, "%s: %v\n", id, err)
			failed = append(failed, id)
			continue
		}
		pulled++
		for _, l := range locals {
			fmt.Fprintf(sio.out, "%s\t%s\t%s\n", id, l.Role, l.Path)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("models pull: %d of %d model(s) failed: %s", len(failed), len(failed)+pulled, strings.Join(failed, ", "))
	}
	if pulled == 0 {
		return errors.New("models pull: the list names no model with files")
	}
	return nil
}

// progressWriter shows the store's download progress: one bar redrawn in
// place on a terminal, a plain line per report otherwise.
type progressWriter struct {
	w   io.Writer
	tty bool

	mu    sync.Mutex // guards model and drawn: OnProgress runs on the store's goroutines
	model string
	drawn bool // a bar is on the terminal's current line
}

func newProgressWriter(w io.Writer, tty bool) *progressWriter {
	return &progressWriter{w: w, tty: tty}
}

// interval is how often the store reports: often enough for a bar to move
// on a terminal, rarely enough for a log otherwise.
func (p *progressWriter) interval() time.Duration {
	if p.tty {
		return 200 * time.Millisecond
	}
	return 5 * time.Second
}

func (p *progressWriter) start(model string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.model = model
	if !p.tty {
		fmt.Fprintf(p.w, "pulling %s\n", model)
	}
}

func (p *progressWriter) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprintln(p.w)
		p.drawn = false
	}
}

func (p *progressWriter) update(pr models.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pct := ""
	if pr.Total > 0 {
		pct = fmt.Sprintf("%3d%%", pr.Done*100/pr.Total)
	}
	size := humanBytes(pr.Done)
	if pr.Total > 0 {
		size += "/" + humanBytes(pr.Total)
	}
	rate := humanBytes(int64(pr.Rate)) + "/s"
	eta := ""
	if pr.ETA > 0 && !pr.Final {
		eta = " ETA " + pr.ETA.Round(time.Second).String()
	}
	if !p.tty {
		state := "downloading"
		if pr.Final {
			state = "done"
		}
		fmt.Fprintf(p.w, "%s %s %s %s %s %s%s\n", p.model, pr.File, state, strings.TrimSpace(pct), size, rate, eta)
		return
	}
	const width = 30
	filled := width
	if pr.Total > 0 && !pr.Final {
		filled = int(pr.Done * width / pr.Total)
	}
	bar := strings.Repeat("#", filled) + strings.Repeat(".", width-filled)
	fmt.Fprintf(p.w, "\r\x1b[K%s %s [%s] %s %s %s%s", p.model, pr.File, bar, pct, size, rate, eta)
	p.drawn = true
	if pr.Final {
		fmt.Fprintln(p.w)
		p.drawn = false
	}
}

// humanBytes writes n in B, KB, MB or GB (powers of 1000).
func humanBytes(n int64) string {
	units := []string{"B", "kB", "MB", "GB", "TB"}
	f := float64(n)
	i := 0
	for f >= 1000 && i < len(units)-1 {
		f /= 1000
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", n)
	}
	return fmt.Sprintf("%.1f %s", f, units[i])
}
