// Package agent wires the worker together: config in, then the engine host,
// the model store, the job runner, registration and the studio session, run
// until the context ends. The stoker command's `agent` subcommand is a thin
// shell around Run, so tests and `-dev` start the very same agent.
package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/supervisor/internal/config"
	"github.com/stokerhq/stoker/supervisor/internal/engines"
	"github.com/stokerhq/stoker/supervisor/internal/jobs"
	"github.com/stokerhq/stoker/supervisor/internal/logship"
	"github.com/stokerhq/stoker/supervisor/internal/models"
	"github.com/stokerhq/stoker/supervisor/internal/protocol"
	"github.com/stokerhq/stoker/supervisor/internal/registration"
	"github.com/stokerhq/stoker/supervisor/internal/studio"
)

// Version is the agent's version, advertised as agentVersion and in the
// user agent studio-worker/<Version>. Release builds set it with -ldflags.
var Version = "0.1.0"

// Options are what Run needs besides the config.
type Options struct {
	// Logger is the agent's root logger; an intercept logger so the
	// studio's log shipping can be registered on it as one more sink.
	Logger hclog.InterceptLogger
	// RegistrationPoll overrides the registration poll interval (the
	// spec's 30s); -dev shortens it.
	RegistrationPoll time.Duration
	// Ready, if set, is called once the agent runs: plugins up, session
	// loop started.
	Ready func(*Agent)
}

// Agent is a running worker.
type Agent struct {
	cfg    *config.Config
	log    hclog.Logger
	host   *engines.Host
	runner *jobs.Runner
	client *studio.Client
	queue  *logship.Queue

	mu   sync.Mutex // guards user
	user string
}

// Run runs the agent until ctx ends or the session gives up for good
// (auth failure, fatal studio error, reconnect attempts exhausted).
func Run(ctx context.Context, cfg *config.Config, opts Options) error {
	log := opts.Logger
	if log == nil {
		log = hclog.NewInterceptLogger(&hclog.LoggerOptions{Name: "stoker", Level: hclog.LevelFromString(cfg.LogLevel)})
	}
	queue := logship.New()
	sink := logship.NewSink(queue)
	log.RegisterSink(sink)
	defer log.DeregisterSink(sink)

	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	paths, err := pluginPaths(cfg)
	if err != nil {
		return err
	}
	if len(paths) == 0 {
		log.Warn("no engine plugins found; the worker will advertise no task kinds", "plugin_dir", cfg.PluginDir)
	}
	host, err := engines.Start(ctx, engines.Config{
		Plugins:      paths,
		Logger:       log,
		Env:          []string{plugins.EnvLogLevel + "=" + cfg.LogLevel},
		StartTimeout: cfg.PluginStartTimeout.D(),
		StallTimeout: cfg.StallTimeout.D(),
	})
	if err != nil {
		return fmt.Errorf("engines: %w", err)
	}
	defer host.Close()

	store, err := models.Open(models.Config{
		Root:         cfg.ModelsRoot,
		MaxBytes:     cfg.ModelsMaxBytes,
		UserAgent:    "studio-worker/" + Version,
		Logger:       log.Named("models"),
		AllowFileDir: cfg.InputFileDir,
	})
	if err != nil {
		return fmt.Errorf("models: %w", err)
	}
	runner, err := jobs.New(jobs.Config{
		Engines: host,
		Models:  store,
		WorkDir: filepath.Join(cfg.StateDir, "jobs"),
		Logger:  log,
	})
	if err != nil {
		return err
	}
	a := &Agent{cfg: cfg, log: log, host: host, runner: runner, queue: queue}

	workerID, token := cfg.WorkerID, cfg.AuthToken
	if workerID == "" {
		creds, err := registration.Register(ctx, registration.Config{
			BaseURL:      cfg.APIBaseURL,
			StateDir:     cfg.StateDir,
			Capabilities: a.Capabilities,
			UserAgent:    "studio-worker/" + Version,
			PollInterval: opts.RegistrationPoll,
			Logger:       log,
		})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("registration: %w", err)
		}
		workerID, token = creds.WorkerID, creds.AuthToken
	}
	a.client, err = studio.New(studio.Config{
		BaseURL:           cfg.APIBaseURL,
		WorkerID:          workerID,
		AuthToken:         token,
		ReconnectAttempts: cfg.WSReconnectAttempts,
		Capabilities:      a.Capabilities,
		Jobs:              runner,
		Logs:              queue,
		Logger:            log,
		HTTPClient:        &http.Client{Timeout: protocol.HTTPTimeout},
	})
	if err != nil {
		return err
	}
	log.Info("agent running", "version", Version, "studio", cfg.APIBaseURL, "worker_id", workerID, "plugins", len(paths))
	if opts.Ready != nil {
		opts.Ready(a)
	}
	err = a.client.Run(ctx)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// pluginPaths lists the plugins to run: those discovered in plugin_dir plus
// the configured ones.
func pluginPaths(cfg *config.Config) ([]string, error) {
	var paths []string
	if cfg.PluginDir != "" {
		found, err := engines.Discover(cfg.PluginDir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		paths = append(paths, found...)
	}
	for _, p := range cfg.Plugins {
		if err := engines.CheckPermissions(p); err != nil {
			return nil, err
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// Engines returns the engine host.
func (a *Agent) Engines() *engines.Host { return a.host }

// Jobs returns the job runner.
func (a *Agent) Jobs() *jobs.Runner { return a.runner }

// Studio returns the studio session client.
func (a *Agent) Studio() *studio.Client { return a.client }

// Capabilities builds the advertised capabilities (spec §8.1) from the
// plugins that are ready and healthy now and the config. It is called for
// every heartbeat and is cheap (I-9): no plugin is asked anything.
func (a *Agent) Capabilities() protocol.WorkerCapabilities {
	off := a.host.Offerings()
	c := protocol.WorkerCapabilities{
		MachineName:            a.cfg.MachineName,
		Username:               a.username(),
		AgentVersion:           Version,
		Engine:                 "multi",
		VramTotalGb:            a.vramTotalGB(),
		VramThresholdGb:        a.cfg.VRAMThresholdGB,
		AutoEnabled:            true,
		AutoStart:              *a.cfg.AutoStart,
		SupportedModelsPerKind: map[protocol.TaskKind][]string{},
	}
	for _, k := range protocol.Kinds() {
		models, ok := off[plugins.TaskKind(k)]
		if !ok {
			continue
		}
		c.TaskKinds = append(c.TaskKinds, k)
		c.SupportedModelsPerKind[k] = models
		c.SupportedModels = append(c.SupportedModels, models...)
	}
	slices.Sort(c.SupportedModels)
	c.SupportedModels = slices.Compact(c.SupportedModels)
	return c
}

// vramTotalGB is the largest GPU memory a ready plugin reports (0 when
// every engine runs on the CPU or none says).
func (a *Agent) vramTotalGB() float32 {
	var most uint64
	for _, st := range a.host.Status() {
		if d := st.Description; d != nil && d.Device.Backend != "" && d.Device.Backend != "cpu" {
			most = max(most, d.Device.MemoryTotal)
		}
	}
	return float32(float64(most) / (1 << 30))
}

func (a *Agent) username() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.user == "" {
		if u, err := user.Current(); err == nil {
			a.user = u.Username
		} else {
			a.user = "unknown"
		}
	}
	return a.user
}
