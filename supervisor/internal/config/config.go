// Package config is the agent's configuration: one TOML file whose keys
// follow the seed worker's names where they exist, each overridable by a
// STOKER_<KEY> environment variable. Defaults are applied in one place
// (Load) and checked by Validate before anything starts. Only the stoker
// command reads files and the environment; packages receive values.
package config

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/stokerhq/stoker/supervisor/internal/dialguard"
	"github.com/stokerhq/stoker/supervisor/internal/httpguard"
	"github.com/stokerhq/stoker/supervisor/internal/secret"
)

// Config is the agent's configuration. Field comments give the TOML key's
// meaning and, in parentheses, the default.
type Config struct {
	// APIBaseURL is the studio's base URL: https, or plain http to a
	// loopback address only, since every request carries the worker's
	// token. ("https://studio.minis.gg/")
	APIBaseURL string `toml:"api_base_url"`
	// WorkerID and AuthToken are approved credentials. Normally left empty:
	// registration stores them in the state dir. When set, they win.
	WorkerID  string       `toml:"worker_id"`
	AuthToken secret.Value `toml:"auth_token"`
	// ModelsRoot is the model cache. ("<state_dir>/models")
	ModelsRoot string `toml:"models_root"`
	// ModelsMaxBytes caps the model cache; least recently used files not in
	// use are evicted. (0: no cap)
	ModelsMaxBytes int64 `toml:"models_max_bytes"`
	// VRAMThresholdGB is the largest vramGbEstimate this worker takes.
	// (0: the memory of the GPU its plugins report, rounded down to a
	// tenth of a GB; 12 when none reports a GPU)
	VRAMThresholdGB float32 `toml:"vram_threshold_gb"`
	// GPU is the index of the one GPU this agent's plugins use, for one
	// agent per GPU (the stoker@.service template sets it from its
	// instance name): the plugins get it as CUDA_VISIBLE_DEVICES,
	// HIP_VISIBLE_DEVICES and GGML_VK_VISIBLE_DEVICES, in place of the
	// agent's own, and as STOKER_PLUGIN_GPU. ("": every device the plugins'
	// libraries find; they use the first)
	GPU string `toml:"gpu"`
	// WSReconnectAttempts is how many consecutive failed connects are
	// retried; 0 means forever. (0)
	WSReconnectAttempts int `toml:"ws_reconnect_attempts"`
	// AutoStart is advertised in the capabilities. (true)
	AutoStart *bool `toml:"auto_start"`
	// MachineName is advertised in the capabilities. (the host name)
	MachineName string `toml:"machine_name"`
	// PluginDir is searched for executables named *-plugin. (the
	// directory of the stoker executable)
	PluginDir string `toml:"plugin_dir"`
	// Plugins are extra plugin executables to run.
	Plugins []string `toml:"plugins"`
	// StateDir holds the identity, credentials, job scratch space and the
	// pid records of plugins. ("$XDG_STATE_HOME/stoker" or
	// "~/.local/state/stoker")
	StateDir string `toml:"state_dir"`
	// LogLevel is trace, debug, info, warn or error. (info)
	LogLevel string `toml:"log_level"`
	// LogJSON writes the agent's log as JSON lines. (false)
	LogJSON bool `toml:"log_json"`
	// Listen is the local API's address: status page, /v1/status,
	// /metrics, pause and resume. "" turns it off. ("127.0.0.1:8710")
	Listen string `toml:"listen"`
	// AllowedHosts are the host names (no port) the local API answers to
	// besides IP literals and "localhost"; any other Host header is
	// refused, which stops DNS rebinding. As a variable, comma-separated.
	// (none)
	AllowedHosts []string `toml:"allowed_hosts"`
	// LocalJobs serves the local job routes on the local API: the
	// reference's /image, /models and /jobs and the OpenAI-compatible
	// /v1/... (docs/local-api.md). Off with the local API. (true)
	LocalJobs *bool `toml:"local_jobs"`
	// LocalQueue is how many local requests may wait for the node's one
	// job slot while a job runs; one more is answered 429. (4)
	LocalQueue int `toml:"local_queue"`
	// LocalDefaultModel is the local catalog's model for a POST /image
	// that names none. ("sd-turbo", the catalog's default image model)
	LocalDefaultModel string `toml:"local_default_model"`
	// FetchAllow lists what model and input downloads may connect to
	// besides public addresses: networks ("10.1.0.0/16"), addresses
	// ("127.0.0.1", "::1") and host names ("mirror.lan", any address it
	// resolves to). Loopback, private, link-local and other non-public
	// addresses are refused otherwise, on the address dialled. For local
	// mirrors and test servers; agent -dev adds loopback. As a variable:
	// STOKER_FETCH_ALLOW="127.0.0.0/8,::1". (none)
	FetchAllow []string `toml:"fetch_allow"`
	// InputFileDir allows file:// task inputs inside this directory. ("":
	// refused)
	InputFileDir string `toml:"input_file_dir"`
	// StallTimeout fails a job whose plugin reports nothing for this
	// long. ("5m")
	StallTimeout Duration `toml:"stall_timeout"`
	// PluginStartTimeout bounds a plugin's start and first Describe.
	// ("10s")
	PluginStartTimeout Duration `toml:"plugin_start_timeout"`
	// DrainTimeout is how long SIGTERM lets a running job finish. ("60s")
	DrainTimeout Duration `toml:"drain_timeout"`
	// StallTimeouts overrides stall_timeout per engine id, e.g.
	// [stall_timeouts] "llama-cpp" = "2m". As a variable:
	// STOKER_STALL_TIMEOUTS="llama-cpp=2m,faults=1s". (none)
	StallTimeouts map[string]Duration `toml:"stall_timeouts"`
	// PluginCrashLimit crashes (failed starts included) within
	// plugin_crash_window quarantine a plugin: its task kinds leave the
	// advertised capabilities and its offers are rejected. (3)
	PluginCrashLimit int `toml:"plugin_crash_limit"`
	// PluginCrashWindow is the span plugin_crash_limit counts over. ("5m")
	PluginCrashWindow Duration `toml:"plugin_crash_window"`
	// PluginQuarantine is how long a quarantined plugin stays out of
	// service before it is started again as a re-probe. ("1m")
	PluginQuarantine Duration `toml:"plugin_quarantine"`
	// PluginWarmSpare keeps one warm spare per plugin: a second process,
	// started, handshaken and described, idle, swapped in at once when the
	// serving one dies (crash → serving again in milliseconds instead of a
	// process start). It costs one idle plugin process each (without a
	// model: 16-42 MiB resident for this repository's plugins, 3-19 MiB
	// of it private). false turns the spares off. (true)
	PluginWarmSpare *bool `toml:"plugin_warm_spare"`
	// PluginSHA256 pins plugin executables, by file name or by absolute
	// path, to their hex SHA-256, e.g. [plugin_sha256] "synthetic-plugin"
	// = "9f86d0...". A file name pins every plugin of that name, a path
	// the one file. The bytes hashed are the bytes executed; a pinned
	// plugin that differs is refused at every launch, and a pin that
	// names no plugin stops the start. As a variable:
	// STOKER_PLUGIN_SHA256="synthetic-plugin=9f86...,faults-plugin=...".
	// (none: no pins)
	PluginSHA256 map[string]string `toml:"plugin_sha256"`
	// RequirePins refuses to start unless every plugin has a pin in
	// plugin_sha256. (false)
	RequirePins bool `toml:"require_pins"`
	// PluginEnv names environment variables of the agent passed on to the
	// plugins besides the SDK's allow-list (plugins.PassEnv: PATH, HOME,
	// LANG, LD_LIBRARY_PATH, GGML_*, CUDA_*, STOKER_SDCPP_*, …): exact
	// names, or a prefix ending in "*" ("MYENGINE_*"). The agent's own
	// settings (STOKER_<key>, such as STOKER_AUTH_TOKEN) are never
	// passed. As a variable, comma-separated. (none)
	PluginEnv []string `toml:"plugin_env"`
	// JobTimeouts is the hard deadline of a job per task kind (image, llm,
	// audio_stt, audio_tts, video), besides stall_timeout: a plugin that
	// reports progress forever never stalls. A job past it fails
	// retryable as timed_out and the plugin is restarted. As a variable:
	// STOKER_JOB_TIMEOUTS="image=30m,llm=1h". (image, llm, audio_tts 2h;
	// audio_stt, video 6h)
	JobTimeouts map[string]Duration `toml:"job_timeouts"`
}

// taskKinds are the keys job_timeouts takes (spec §6.2).
var taskKinds = []string{"image", "llm", "audio_stt", "audio_tts", "video"}

// envName matches a plugin_env entry: a variable name, or a prefix of one
// ending in "*".
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*\*?$`)

// DefaultLocalModel is the local catalog's default image model (package
// localmodels seeds it).
const DefaultLocalModel = "sd-turbo"

// DefaultListen is the local API's address when listen is not given.
const DefaultListen = "127.0.0.1:8710"

// Duration is a time.Duration written as "90s" or "5m" in TOML.
type Duration time.Duration

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Load reads the TOML file at path (none when path is ""), applies the
// STOKER_<KEY> variables of env on top, fills in defaults and validates.
// Unknown keys in the file are an error.
func Load(path string, env []string) (*Config, error) {
	c, _, err := LoadWithOrigins(path, env, nil)
	return c, err
}

// Origin is where a key's value came from, in rising precedence: the
// default, the file, a STOKER_<KEY> variable, a command-line -set.
type Origin string

const (
	FromDefault Origin = "default"
	FromFile    Origin = "file"
	FromEnv     Origin = "env"
	FromFlag    Origin = "flag"
)

// Origins maps each TOML key to where its value came from.
type Origins map[string]Origin

// LoadWithOrigins is Load with command-line settings on top and the origin
// of every key. set holds "key=value" pairs (the -set flag), written as the
// STOKER_<KEY> variables are (lists comma-separated, maps "k=v,k=v"); they
// win over the environment. An unknown key in set is an error.
func LoadWithOrigins(path string, env, set []string) (*Config, Origins, error) {
	c := &Config{}
	origins := Origins{}
	for _, key := range Keys() {
		origins[key] = FromDefault
	}
	if path != "" {
		md, err := toml.DecodeFile(path, c)
		if err != nil {
			return nil, nil, fmt.Errorf("config %s: %w", path, err)
		}
		if und := md.Undecoded(); len(und) > 0 {
			keys := make([]string, len(und))
			for i, k := range und {
				keys[i] = k.String()
			}
			return nil, nil, fmt.Errorf("config %s: unknown keys: %s", path, strings.Join(keys, ", "))
		}
		for _, k := range md.Keys() {
			if len(k) > 0 {
				origins[k[0]] = FromFile
			}
		}
	}
	vars := map[string]string{}
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, EnvPrefix) {
			vars[k] = v
		}
	}
	if err := applyVars(c, vars, origins, FromEnv, func(key string) string { return EnvPrefix + strings.ToUpper(key) }); err != nil {
		return nil, nil, err
	}
	flags := map[string]string{}
	for _, kv := range set {
		k, v, ok := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, nil, fmt.Errorf("config: -set %q: want key=value", kv)
		}
		if !slices.Contains(Keys(), k) {
			return nil, nil, fmt.Errorf("config: -set %s: unknown key (the keys are those of the TOML file: docs/operations.md)", k)
		}
		flags[k] = v
	}
	if err := applyVars(c, flags, origins, FromFlag, func(key string) string { return key }); err != nil {
		return nil, nil, err
	}
	if err := c.setDefaults(); err != nil {
		return nil, nil, err
	}
	// listen = "" turns the local API off, so its default applies only
	// when the key is not given at all.
	if origins["listen"] == FromDefault {
		c.Listen = DefaultListen
	}
	if err := c.Validate(); err != nil {
		return nil, nil, err
	}
	return c, origins, nil
}

// Keys returns the TOML keys, in the order of Config's fields.
func Keys() []string {
	rt := reflect.TypeFor[Config]()
	keys := make([]string, 0, rt.NumField())
	for i := range rt.NumField() {
		if key := rt.Field(i).Tag.Get("toml"); key != "" {
			keys = append(keys, key)
		}
	}
	return keys
}

func (c *Config) setDefaults() error {
	if c.APIBaseURL == "" {
		c.APIBaseURL = "https://studio.minis.gg/"
	}
	if c.AutoStart == nil {
		t := true
		c.AutoStart = &t
	}
	if c.LocalJobs == nil {
		t := true
		c.LocalJobs = &t
	}
	if c.LocalQueue == 0 {
		c.LocalQueue = 4
	}
	if c.LocalDefaultModel == "" {
		c.LocalDefaultModel = DefaultLocalModel
	}
	if c.PluginWarmSpare == nil {
		t := true
		c.PluginWarmSpare = &t
	}
	if c.MachineName == "" {
		c.MachineName, _ = os.Hostname()
	}
	if c.StateDir == "" {
		base := os.Getenv("XDG_STATE_HOME")
		if base == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return fmt.Errorf("config: state_dir: %w", err)
			}
			base = filepath.Join(home, ".local", "state")
		}
		c.StateDir = filepath.Join(base, "stoker")
	}
	if c.ModelsRoot == "" {
		c.ModelsRoot = filepath.Join(c.StateDir, "models")
	}
	if c.PluginDir == "" {
		exe, err := os.Executable()
		if err == nil {
			c.PluginDir = filepath.Dir(exe)
		}
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.StallTimeout == 0 {
		c.StallTimeout = Duration(5 * time.Minute)
	}
	if c.PluginStartTimeout == 0 {
		c.PluginStartTimeout = Duration(10 * time.Second)
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = Duration(60 * time.Second)
	}
	if c.PluginCrashLimit == 0 {
		c.PluginCrashLimit = 3
	}
	if c.PluginCrashWindow == 0 {
		c.PluginCrashWindow = Duration(5 * time.Minute)
	}
	if c.PluginQuarantine == 0 {
		c.PluginQuarantine = Duration(time.Minute)
	}
	return nil
}

// Validate checks the configuration once defaults are applied.
func (c *Config) Validate() error {
	var errs []error
	if u, err := url.Parse(c.APIBaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("api_base_url %q: want an http(s) URL", c.APIBaseURL))
	} else if u.Scheme == "http" && !httpguard.LoopbackHost(u.Hostname()) {
		// The worker's token and every result would cross the network
		// in the clear.
		errs = append(errs, fmt.Errorf("api_base_url %q: plain http is only for a studio on loopback; use https", c.APIBaseURL))
	}
	if c.LocalQueue < 0 {
		errs = append(errs, fmt.Errorf("local_queue: %d is negative", c.LocalQueue))
	}
	for _, h := range c.AllowedHosts {
		if !validHostName(h) {
			errs = append(errs, fmt.Errorf("allowed_hosts: %q is not a host name (no scheme, port or spaces)", h))
		}
	}
	if _, err := dialguard.Parse(c.FetchAllow); err != nil {
		errs = append(errs, fmt.Errorf("fetch_allow: %w", err))
	}
	if (c.WorkerID == "") != c.AuthToken.IsZero() {
		errs = append(errs, errors.New("worker_id and auth_token must be set together (or both left to registration)"))
	}
	if c.VRAMThresholdGB < 0 {
		errs = append(errs, fmt.Errorf("vram_threshold_gb %v: must not be negative", c.VRAMThresholdGB))
	}
	if c.GPU != "" {
		if n, err := strconv.Atoi(c.GPU); err != nil || n < 0 {
			why := ""
			switch strings.ToLower(c.GPU) {
			case "cpu", "vulkan", "cuda":
				// The same variable names the engine build for the
				// install and build scripts.
				why = "; STOKER_GPU=" + c.GPU + " is for scripts/install-engines.sh and scripts/build.sh, not for the agent"
			}
			errs = append(errs, fmt.Errorf("gpu %q: want the index of a GPU, such as 0%s", c.GPU, why))
		}
	}
	if c.WSReconnectAttempts < 0 {
		errs = append(errs, fmt.Errorf("ws_reconnect_attempts %d: must not be negative", c.WSReconnectAttempts))
	}
	if c.PluginCrashLimit < 0 {
		errs = append(errs, fmt.Errorf("plugin_crash_limit %d: must not be negative", c.PluginCrashLimit))
	}
	for key, d := range map[string]Duration{
		"stall_timeout": c.StallTimeout, "plugin_start_timeout": c.PluginStartTimeout, "drain_timeout": c.DrainTimeout,
		"plugin_crash_window": c.PluginCrashWindow, "plugin_quarantine": c.PluginQuarantine,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s %v: must not be negative", key, d.D()))
		}
	}
	for engine, d := range c.StallTimeouts {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("stall_timeouts.%s %v: must be positive", engine, d.D()))
		}
	}
	for name, sum := range c.PluginSHA256 {
		if b, err := hex.DecodeString(sum); err != nil || len(b) != 32 {
			errs = append(errs, fmt.Errorf("plugin_sha256.%s: %q is not 64 hex digits", name, sum))
		}
		if name == "" || strings.ContainsRune(name, '/') && !filepath.IsAbs(name) {
			errs = append(errs, fmt.Errorf("plugin_sha256: key %q: want a plugin's file name or its absolute path", name))
		}
	}
	for kind, d := range c.JobTimeouts {
		if !slices.Contains(taskKinds, kind) {
			errs = append(errs, fmt.Errorf("job_timeouts.%s: not a task kind (want one of %s)", kind, strings.Join(taskKinds, ", ")))
		}
		if d <= 0 {
			errs = append(errs, fmt.Errorf("job_timeouts.%s %v: must be positive", kind, d.D()))
		}
	}
	for _, name := range c.PluginEnv {
		switch {
		case !envName.MatchString(name):
			errs = append(errs, fmt.Errorf("plugin_env: %q is not a variable name or a prefix ending in *", name))
		case IsSetting(name):
			errs = append(errs, fmt.Errorf("plugin_env: %q is the agent's own setting; settings (%s<key>, such as %sAUTH_TOKEN) never reach plugins", name, EnvPrefix, EnvPrefix))
		}
	}
	switch strings.ToLower(c.LogLevel) {
	case "trace", "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log_level %q: want trace, debug, info, warn or error", c.LogLevel))
	}
	if !filepath.IsAbs(c.StateDir) {
		if abs, err := filepath.Abs(c.StateDir); err == nil {
			c.StateDir = abs
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("config: %w", errors.Join(errs...))
	}
	return nil
}

// validHostName reports whether h is a DNS name as a Host header carries
// it: letters, digits, '-', '_' and '.', without port or scheme.
func validHostName(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, c := range h {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '.', c == '_':
		default:
			return false
		}
	}
	return true
}

// EnvPrefix starts every override variable: STOKER_API_BASE_URL sets
// api_base_url, and so on for every key.
const EnvPrefix = "STOKER_"

// IsSetting reports whether the environment variable name is one of the
// agent's own settings (STOKER_<key> for a config key, such as
// STOKER_AUTH_TOKEN). The agent never passes those to plugins, whatever
// plugin_env says.
func IsSetting(name string) bool {
	key, ok := strings.CutPrefix(name, EnvPrefix)
	if !ok {
		return false
	}
	rt := reflect.TypeFor[Config]()
	for i := range rt.NumField() {
		if strings.ToUpper(rt.Field(i).Tag.Get("toml")) == key {
			return true
		}
	}
	return false
}

// applyVars sets the fields whose name (nameOf of their TOML key) is in
// vars and records origin for them. Lists are comma-separated.
func applyVars(c *Config, vars map[string]string, origins Origins, origin Origin, nameOf func(key string) string) error {
	rv := reflect.ValueOf(c).Elem()
	rt := rv.Type()
	for i := range rt.NumField() {
		key := rt.Field(i).Tag.Get("toml")
		name := nameOf(key)
		val, ok := vars[name]
		if !ok {
			continue
		}
		if err := setField(rv.Field(i), val); err != nil {
			if origin == FromFlag {
				return fmt.Errorf("config: -set %s: %w", key, err)
			}
			return fmt.Errorf("config: %s: %w", name, err)
		}
		origins[key] = origin
	}
	return nil
}

func setField(f reflect.Value, val string) error {
	switch p := f.Addr().Interface().(type) {
	case *secret.Value:
		*p = secret.New(val)
		return nil
	case *Duration:
		return p.UnmarshalText([]byte(val))
	case *[]string:
		*p = nil
		for _, s := range strings.Split(val, ",") {
			if s = strings.TrimSpace(s); s != "" {
				*p = append(*p, s)
			}
		}
		return nil
	case *map[string]string:
		*p = map[string]string{}
		return splitPairs(val, func(k, v string) error { (*p)[k] = v; return nil })
	case *map[string]Duration:
		*p = map[string]Duration{}
		return splitPairs(val, func(k, v string) error {
			var d Duration
			if err := d.UnmarshalText([]byte(v)); err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
			(*p)[k] = d
			return nil
		})
	case **bool:
		b, err := strconv.ParseBool(val)
		if err != nil {
			return err
		}
		*p = &b
		return nil
	}
	switch f.Kind() {
	case reflect.String:
		f.SetString(val)
	case reflect.Bool:
		b, err := strconv.ParseBool(val)
		if err != nil {
			return err
		}
		f.SetBool(b)
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(val, 10, 64)
		if err != nil {
			return err
		}
		f.SetInt(n)
	case reflect.Float32:
		x, err := strconv.ParseFloat(val, 32)
		if err != nil {
			return err
		}
		f.SetFloat(x)
	default:
		return fmt.Errorf("unsupported type %s", f.Type())
	}
	return nil
}

// splitPairs parses "k=v,k=v" and calls set for each pair.
func splitPairs(val string, set func(k, v string) error) error {
	for _, kv := range strings.Split(val, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return fmt.Errorf("%q: want key=value", kv)
		}
		if err := set(strings.TrimSpace(k), strings.TrimSpace(v)); err != nil {
			return err
		}
	}
	return nil
}
