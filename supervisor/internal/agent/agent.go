// Package agent wires the worker together: config in, then the engine host,
// the model store, the job runner, registration and the studio session, run
// until the context ends. The stoker command's `agent` subcommand is a thin
// shell around Run, so tests and `-dev` start the very same agent.
package agent

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/supervisor/internal/config"
	"github.com/stokerhq/stoker/supervisor/internal/engines"
	"github.com/stokerhq/stoker/supervisor/internal/jobs"
	"github.com/stokerhq/stoker/supervisor/internal/jobslot"
	"github.com/stokerhq/stoker/supervisor/internal/localapi"
	"github.com/stokerhq/stoker/supervisor/internal/localjobs"
	"github.com/stokerhq/stoker/supervisor/internal/localmodels"
	"github.com/stokerhq/stoker/supervisor/internal/logship"
	"github.com/stokerhq/stoker/supervisor/internal/models"
	"github.com/stokerhq/stoker/supervisor/internal/protocol"
	"github.com/stokerhq/stoker/supervisor/internal/reaper"
	"github.com/stokerhq/stoker/supervisor/internal/registration"
	"github.com/stokerhq/stoker/supervisor/internal/studio"
)

// ModelStoreConfig is the model store's configuration for cfg, the same
// for the agent's jobs and for `stoker models pull`.
func ModelStoreConfig(cfg *config.Config, log hclog.Logger) models.Config {
	return models.Config{
		Root:         cfg.ModelsRoot,
		MaxBytes:     cfg.ModelsMaxBytes,
		UserAgent:    "studio-worker/" + Version,
		Logger:       log,
		AllowFileDir: cfg.InputFileDir,
		Allow:        cfg.FetchAllow,
		// Local jobs' uploads (audio to transcribe) are read from here.
		LocalInputDir: localInputDir(cfg.StateDir),
	}
}

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
	// HeartbeatInterval overrides the session's heartbeat interval (the
	// spec's 5s); tests shorten it to see a pause reach the studio.
	HeartbeatInterval time.Duration
	// DeviceRefresh overrides how often each plugin's device (its memory
	// in the capabilities' vramTotalGb) is read again
	// (engines.DefaultDeviceRefresh); tests shorten it.
	DeviceRefresh time.Duration
	// LocalModels are put into the local model catalog at every start,
	// replacing models of the same id (-dev puts the dev studio's models
	// there, whose URLs name its address). (none)
	LocalModels []localmodels.Model
	// Environ is the agent's environment (os.Environ() in main). Plugins
	// get its allow-listed part (plugins.PassEnv and plugin_env), never the
	// agent's own settings (config.IsSetting, such as STOKER_AUTH_TOKEN).
	// (none: plugins get only STOKER_PLUGIN_LOG_LEVEL)
	Environ []string
}

// Agent is a running worker.
type Agent struct {
	cfg    *config.Config
	log    hclog.Logger
	host   *engines.Host
	runner *jobs.Runner
	client *studio.Client
	queue  *logship.Queue

	status *status
	api    *localapi.Server   // nil when listen is off
	slot   *jobslot.Slot      // the node's one job slot, studio and local jobs
	local  *localjobs.Service // nil when the local job routes are off

	mu   sync.Mutex // guards user
	user string
}

// LocalJobs returns the local jobs service, or nil when its routes are
// off.
func (a *Agent) LocalJobs() *localjobs.Service { return a.local }

// Slot returns the node's job slot.
func (a *Agent) Slot() *jobslot.Slot { return a.slot }

// LocalAPI returns the local API server, or nil when listen is off.
func (a *Agent) LocalAPI() *localapi.Server { return a.api }

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
	// Plugins an earlier run left behind go before any of ours start.
	pids, err := reaper.Open(filepath.Join(cfg.StateDir, "plugin-pids"), log)
	if err != nil {
		return err
	}
	if killed, err := pids.Reap(); err != nil || len(killed) > 0 {
		log.Warn("start-up reaper", "killed_leftover_plugins", killed, "error", err)
	}
	paths, err := pluginPaths(cfg)
	if err != nil {
		return err
	}
	if len(paths) == 0 {
		log.Warn("no engine plugins found; the worker will advertise no task kinds", "plugin_dir", cfg.PluginDir)
	}
	host, err := engines.Start(ctx, engines.Config{
		Plugins:       paths,
		Logger:        log,
		Env:           pluginEnv(cfg, opts.Environ),
		StartTimeout:  cfg.PluginStartTimeout.D(),
		StallTimeout:  cfg.StallTimeout.D(),
		StallTimeouts: stallTimeouts(cfg),
		DeviceRefresh: opts.DeviceRefresh,
		Breaker: engines.Breaker{
			Crashes:  cfg.PluginCrashLimit,
			Window:   cfg.PluginCrashWindow.D(),
			Cooldown: cfg.PluginQuarantine.D(),
		},
		SHA256:      cfg.PluginSHA256,
		RequirePins: cfg.RequirePins,
		JobTimeouts: jobTimeouts(cfg),
		NoSpare:     !*cfg.PluginWarmSpare,
		Pids:        pids,
	})
	if err != nil {
		return fmt.Errorf("engines: %w", err)
	}
	defer host.Close()

	tally := &localapi.Tally{}
	scfg := ModelStoreConfig(cfg, log.Named("models"))
	scfg.OnProgress = func(p models.Progress) {
		if p.Final {
			tally.Downloaded(p.Fetched, p.Elapsed)
		}
	}
	store, err := models.Open(scfg)
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
	a := &Agent{cfg: cfg, log: log, host: host, runner: runner, queue: queue, slot: jobslot.New(cfg.LocalQueue)}
	a.status = &status{a: a, started: time.Now(), tally: tally}
	if cfg.Listen != "" {
		var routes []localapi.Route
		if *cfg.LocalJobs {
			svc, rs, err := a.startLocalJobs(a.slot, opts.LocalModels)
			if err != nil {
				return fmt.Errorf("local jobs: %w", err)
			}
			// Runs after the local API's Close (deferred later), which
			// lets requests in flight finish for its shutdown timeout,
			// then cuts them and so cancels their jobs; this waits for
			// the jobs.
			defer svc.Close()
			a.local, routes = svc, rs
		}
		// Up before registration, so an operator sees "waiting for approval".
		api, err := localapi.New(localapi.Config{
			Addr: cfg.Listen, Source: a.status, Controls: a.status, Resident: a.status, Logger: log,
			TokenFile: filepath.Join(cfg.StateDir, localapi.TokenFile), AllowedHosts: cfg.AllowedHosts,
			Collectors: []prometheus.Collector{tally}, Routes: routes,
		})
		if err != nil {
			return err
		}
		if err := api.Start(ctx); err != nil {
			return fmt.Errorf("local API: %w", err)
		}
		defer api.Close()
		a.api = api
		log.Info("local API listening", "url", "http://"+api.Addr().String()+"/")
	}
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
		JobDone:           a.status.jobDone,
		Slot:              studioSlot{a.slot},
		Logs:              queue,
		Logger:            log,
		HTTPClient:        &http.Client{Timeout: protocol.HTTPTimeout},
		HeartbeatInterval: opts.HeartbeatInterval,
	})
	if err != nil {
		return err
	}
	a.status.setClient(a.client)
	log.Info("agent running", "version", Version, "studio", cfg.APIBaseURL, "worker_id", workerID, "plugins", len(paths))
	if opts.Ready != nil {
		opts.Ready(a)
	}
	// The session runs until the drain is over, not until ctx ends: the
	// first signal drains (Shutdown), the second exits the process.
	sessCtx, stopSession := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSession()
	var sessErr error
	sessDone := make(chan struct{}) // closed once the session's Run returned
	go func() {
		sessErr = a.client.Run(sessCtx)
		close(sessDone)
	}()
	select {
	case <-sessDone:
		return sessErr // the session gave up for good
	case <-ctx.Done():
	}
	a.drain()
	<-sessDone
	return nil // then the deferred host.Close stops the plugins
}

// drain is the first signal's graceful stop: offers are rejected (code
// paused, and heartbeats say autoEnabled:false), the running job gets
// DrainTimeout to finish and report; after that it is cancelled and
// reported as a retryable failure over the still-open session, which then
// closes.
func (a *Agent) drain() {
	timeout := a.cfg.DrainTimeout.D()
	ctx, cancel := context.WithTimeoutCause(context.Background(), timeout,
		fmt.Errorf("agent stopping: drain timeout %s passed", timeout))
	defer cancel()
	a.log.Info("draining: taking no new offers; waiting for the running job", "drain_timeout", timeout)
	// Local jobs drain beside the studio's, in the same time: they share
	// the job slot, so at most one of the two runs.
	localDone := make(chan error, 1)
	go func() { // ends within the drain timeout (Shutdown cancels then)
		if a.local == nil {
			localDone <- nil
			return
		}
		localDone <- a.local.Shutdown(ctx)
	}()
	err := a.client.Shutdown(ctx)
	if lerr := <-localDone; lerr != nil {
		a.log.Warn("drain timeout: cancelled the running local job; its client gets 503", "cause", lerr)
	}
	if err != nil {
		a.log.Warn("drain timeout: cancelled the running job; it is reported as a retryable failure", "cause", context.Cause(ctx))
		return
	}
	a.log.Info("drained: no job running")
}

// stallTimeouts converts the per-engine stall windows.
func stallTimeouts(cfg *config.Config) map[string]time.Duration {
	out := make(map[string]time.Duration, len(cfg.StallTimeouts))
	for engine, d := range cfg.StallTimeouts {
		out[engine] = d.D()
	}
	return out
}

// jobTimeouts converts the per-kind job deadlines.
func jobTimeouts(cfg *config.Config) map[plugins.TaskKind]time.Duration {
	out := make(map[plugins.TaskKind]time.Duration, len(cfg.JobTimeouts))
	for kind, d := range cfg.JobTimeouts {
		out[plugins.TaskKind(kind)] = d.D()
	}
	return out
}

// pluginEnv is the plugins' environment: the allow-listed part of the
// agent's, without any of the agent's own settings, and the log level;
// with gpu set, that GPU's index in the device libraries' variables (in
// place of the agent's own) and in plugins.EnvGPU.
func pluginEnv(cfg *config.Config, environ []string) []string {
	var out []string
	for _, kv := range plugins.Env(environ, cfg.PluginEnv) {
		name, _, _ := strings.Cut(kv, "=")
		if config.IsSetting(name) || name == plugins.EnvLogLevel || name == plugins.EnvGPU ||
			cfg.GPU != "" && slices.Contains(plugins.GPUVisibleDevices, name) {
			continue
		}
		out = append(out, kv)
	}
	if cfg.GPU != "" {
		// One agent per GPU: its plugins see that GPU alone.
		for _, name := range plugins.GPUVisibleDevices {
			out = append(out, name+"="+cfg.GPU)
		}
		out = append(out, plugins.EnvGPU+"="+cfg.GPU)
	}
	return append(out, plugins.EnvLogLevel+"="+cfg.LogLevel)
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
	vram := a.vramTotalGB()
	c := protocol.WorkerCapabilities{
		MachineName:            a.cfg.MachineName,
		Username:               a.username(),
		AgentVersion:           Version,
		Engine:                 "multi",
		VramTotalGb:            vram,
		VramThresholdGb:        vramThreshold(a.cfg.VRAMThresholdGB, vram),
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

// DefaultVRAMThresholdGB is the advertised vramThresholdGb when
// vram_threshold_gb is not set and no plugin reports a GPU (the spec's
// default).
const DefaultVRAMThresholdGB = 12

// vramThreshold is the advertised vramThresholdGb: the configured one, or
// when that is 0 the device's memory (vram, rounded down to a tenth of a
// GB, so that a job estimated at exactly the card's size is not promised
// more than the card has), or DefaultVRAMThresholdGB without a GPU.
func vramThreshold(configured, vram float32) float32 {
	switch {
	case configured > 0:
		return configured
	case vram > 0:
		return float32(math.Floor(float64(vram)*10) / 10)
	default:
		return DefaultVRAMThresholdGB
	}
}

// vramTotalGB is the largest GPU memory a ready plugin reports (0 when
// every engine runs on the CPU or none says), as its last description
// said: the engine host asks again every DeviceRefresh.
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
