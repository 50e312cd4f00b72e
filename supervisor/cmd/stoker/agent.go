package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/stokerhq/stoker/supervisor/internal/agent"
	"github.com/stokerhq/stoker/supervisor/internal/config"
	"github.com/stokerhq/stoker/supervisor/internal/devmodels"
	"github.com/stokerhq/stoker/supervisor/internal/devstudio"
	"github.com/stokerhq/stoker/supervisor/internal/httpguard"
	"github.com/stokerhq/stoker/supervisor/internal/localmodels"
	"github.com/stokerhq/stoker/supervisor/internal/registration"
	"github.com/stokerhq/stoker/supervisor/internal/secret"
)

// agentProcs is the agent's GOMAXPROCS unless the environment sets one.
// The agent waits on sockets: the studio's, its plugins', downloads and
// uploads, each a goroutine that reads, hands on and waits again. On one
// processor those hand-offs stay on one OS thread; with more, each can wake
// another thread and a sleeping CPU (a futex call, on a VM an interrupt
// between CPUs), which costs more than the work handed on, and the spare
// threads spin on CPUs the engines want. The plugins' SDK does the same
// (plugins.Serve). Measured in docs/architecture.md, "Speed".
const agentProcs = 1

func runAgent(ctx context.Context, args []string, sio stdio) error {
	fs := newFlagSet("agent", "", "Runs the worker against the studio of api_base_url (with -dev: against a dev studio on this machine).")
	cf := addConfigFlags(fs)
	dev := fs.Bool("dev", false, "run a dev studio on loopback and this worker against it, auto-approved")
	devListen := fs.String("dev-listen", "127.0.0.1:8700", "dev studio `address` (with -dev); loopback only unless -insecure-listen")
	insecure := fs.Bool("insecure-listen", false, "let -dev-listen be an address off loopback (the dev studio has no login: whoever reaches it submits jobs, reads results, approves workers)")
	catalog := fs.String("catalog", "", "dev studio model catalog JSON `file` (with -dev; default: the built-in synthetic models)")
	devState := fs.String("dev-state", "", "state `dir` for -dev (default: $XDG_CACHE_HOME/stoker/dev)")
	if err := parseFlags(fs, args, sio, 0, configHint); err != nil {
		return err
	}
	if *dev {
		if err := checkDevListen("-dev-listen", *devListen, *insecure); err != nil {
			return err
		}
	}
	cfg, _, err := cf.load()
	if err != nil {
		return err
	}
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(agentProcs)
	}
	log := newLogger(cfg, sio.err)
	if msg := ignoredEnvMessage(ignoredEnv(os.Environ(), cfg)); msg != "" {
		log.Warn(msg)
	}
	// Copied before -dev overrides a few fields, so a reload compares
	// like with like.
	stopReload := watchReload(sio.hup, &reloader{path: cf.path, set: cf.set, log: log, cur: *cfg})
	defer stopReload()
	if !*dev {
		return agent.Run(ctx, cfg, agent.Options{Logger: log, Environ: os.Environ()})
	}
	return runDev(ctx, cfg, log, devOptions{listen: *devListen, insecureListen: *insecure, catalog: *catalog, state: *devState})
}

func newLogger(cfg *config.Config, w io.Writer) hclog.InterceptLogger {
	return hclog.NewInterceptLogger(&hclog.LoggerOptions{
		Name:       "stoker",
		Level:      hclog.LevelFromString(cfg.LogLevel),
		Output:     w,
		JSONFormat: cfg.LogJSON,
	})
}

type devOptions struct {
	listen, catalog, state string
	insecureListen         bool
}

// checkDevListen refuses a dev studio address off loopback unless
// -insecure-listen was given; it runs before anything is built or bound.
func checkDevListen(flagName, addr string, insecure bool) error {
	if insecure || httpguard.LoopbackListen(addr) {
		return nil
	}
	return fmt.Errorf("%s %q is off loopback; the dev studio has no login for people (whoever reaches it submits jobs, reads results and approves workers): use 127.0.0.1, or pass -insecure-listen", flagName, addr)
}

// runDev starts the dev studio on loopback with the dev models in its
// catalog, then the agent against it, in one process.
func runDev(ctx context.Context, cfg *config.Config, log hclog.InterceptLogger, o devOptions) error {
	state := o.state
	if state == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return fmt.Errorf("dev state dir: %w", err)
		}
		state = filepath.Join(cache, "stoker", "dev")
	}
	cat, err := loadCatalog(o.catalog)
	if err != nil {
		return err
	}
	ms, err := devmodels.Ensure(filepath.Join(state, "dev-files"))
	if err != nil {
		return err
	}
	srv, err := devstudio.New(devstudio.Config{
		Addr:           o.listen,
		InsecureListen: o.insecureListen,
		AutoApprove:    true,
		Catalog:        cat,
		FilesDir:       filepath.Join(state, "dev-files"),
		ResultsDir:     filepath.Join(state, "results"),
		Logger:         log,
	})
	if err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		return fmt.Errorf("dev studio: %w", err)
	}
	defer srv.Close()
	if err := devmodels.AddToCatalog(srv, cat, ms); err != nil {
		return err
	}
	// A fresh dev studio knows no earlier worker: register anew each run.
	cfg.APIBaseURL = srv.URL()
	cfg.StateDir = filepath.Join(state, "agent")
	cfg.ModelsRoot = filepath.Join(state, "models")
	// A one-machine tool: the dev models come from the dev studio on
	// loopback, which downloads may not reach unless allowed.
	cfg.FetchAllow = append(cfg.FetchAllow, "127.0.0.0/8", "::1")
	cfg.WorkerID, cfg.AuthToken = "", secret.Value{}
	if err := registration.Reset(cfg.StateDir); err != nil {
		return err
	}
	// The local API's jobs run on the same models as the dev studio's.
	local := localModels(cat)
	if cfg.LocalDefaultModel == config.DefaultLocalModel {
		cfg.LocalDefaultModel = "tiny-sd"
	}
	log.Info("dev studio running; open the dashboard to submit jobs", "dashboard", srv.URL()+"/", "models", cat.IDs())
	return agent.Run(ctx, cfg, agent.Options{Logger: log, RegistrationPoll: 200 * time.Millisecond, Environ: os.Environ(), LocalModels: local})
}

func runStudio(ctx context.Context, args []string, sio stdio) error {
	fs := newFlagSet("studio", "", "Runs the dev studio alone (for development and tests: it has no login).")
	listen := fs.String("listen", "127.0.0.1:8700", "`address` to serve on; loopback only unless -insecure-listen")
	insecure := fs.Bool("insecure-listen", false, "let -listen be an address off loopback (the dev studio has no login: whoever reaches it submits jobs, reads results, approves workers)")
	var allowedHosts hostList
	fs.Var(&allowedHosts, "allowed-hosts", "comma-separated host `names` the studio answers to besides IP addresses and localhost (e.g. the name a TLS proxy in front forwards)")
	catalog := fs.String("catalog", "", "model catalog JSON `file` (default: the built-in synthetic models)")
	autoApprove := fs.Bool("auto-approve", false, "approve every registration request")
	dir := fs.String("dir", "", "`directory` for results and dev files (default: a temporary one)")
	maxAttempts := fs.Int("max-attempts", 3, "attempts before a retryable failure becomes final")
	if err := parseFlags(fs, args, sio, 0, ""); err != nil {
		return err
	}
	if err := checkDevListen("-listen", *listen, *insecure); err != nil {
		return err
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "studio", Output: sio.err})
	cat, err := loadCatalog(*catalog)
	if err != nil {
		return err
	}
	cfg := devstudio.Config{Addr: *listen, InsecureListen: *insecure, AllowedHosts: allowedHosts, AutoApprove: *autoApprove,
		Catalog: cat, MaxAttempts: *maxAttempts, Logger: log}
	var ms []devmodels.Model
	if *dir != "" {
		cfg.FilesDir, cfg.ResultsDir = filepath.Join(*dir, "dev-files"), filepath.Join(*dir, "results")
		var err error
		if ms, err = devmodels.Ensure(cfg.FilesDir); err != nil {
			return err
		}
	}
	srv, err := devstudio.New(cfg)
	if err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		return err
	}
	if err := devmodels.AddToCatalog(srv, cat, ms); err != nil {
		return err
	}
	log.Info("dev studio running", "url", srv.URL(), "auto_approve", *autoApprove, "models", cat.IDs())
	for {
		select {
		case <-ctx.Done():
			return srv.Close()
		case <-sio.hup:
			log.Info("SIGHUP: the dev studio has nothing to reload; carrying on")
		}
	}
}

// hostList is a comma-separated flag of host names.
type hostList []string

func (h *hostList) String() string { return strings.Join(*h, ",") }

func (h *hostList) Set(v string) error {
	for _, name := range strings.Split(v, ",") {
		if name = strings.TrimSpace(name); name != "" {
			*h = append(*h, name)
		}
	}
	return nil
}

// localModels are the dev studio catalog's models, for the local model
// catalog.
func localModels(cat *devstudio.Catalog) []localmodels.Model {
	var out []localmodels.Model
	for _, id := range cat.IDs() {
		e, ok := cat.Get(id)
		if !ok || localmodels.CheckID(id) != nil {
			continue
		}
		out = append(out, localmodels.Model{ID: id, Engine: e.Source.Engine, Files: e.Source.Files, CliDefaults: e.Source.CliDefaults})
	}
	return out
}

// loadCatalog returns the dev studio's catalog: the file at path (which
// adds to the built-in synthetic models), or the built-in one when path is
// "".
func loadCatalog(path string) (*devstudio.Catalog, error) {
	if path == "" {
		return devstudio.DefaultCatalog(), nil
	}
	return devstudio.LoadCatalog(path)
}
