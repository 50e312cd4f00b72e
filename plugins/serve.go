package plugins

import (
	"crypto/tls"
	"os"
	"runtime"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// EnvLogLevel names the environment variable through which the supervisor
// passes its log level to plugins.
const EnvLogLevel = "STOKER_PLUGIN_LOG_LEVEL"

// Serve serves e as an engine plugin over go-plugin's gRPC transport. It is
// meant to be the last call of a plugin's main: it blocks until the host
// disconnects or kills the plugin, then exits the process.
func Serve(e Engine, opts ...ServeOption) {
	oneProc()
	log := NewLogger("plugin")
	cfg := &plugin.ServeConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: pluginSet(e),
		GRPCServer:       plugin.DefaultGRPCServer,
		Logger:           log,
	}
	for _, o := range opts {
		o(cfg)
	}
	newServer := cfg.GRPCServer
	cfg.GRPCServer = func(o []grpc.ServerOption) *grpc.Server {
		return newServer(append(o, grpc.InitialWindowSize(windowBytes), grpc.InitialConnWindowSize(windowBytes)))
	}
	// The certificate the host made for this process (mtls.go); without
	// one, go-plugin's AutoMTLS makes it.
	switch tc, err := serverTLS(); {
	case err != nil:
		log.Error("cannot use the host's TLS pair; making a certificate here", "error", err)
	case tc != nil:
		cfg.TLSProvider = func() (*tls.Config, error) { return tc, nil }
	}
	plugin.Serve(cfg)
}

// windowBytes is the HTTP/2 flow-control window of the host's connection
// to a plugin, per stream and for the connection, on both ends. A window
// set by hand turns off gRPC's bandwidth estimator, which otherwise answers
// nearly every message it receives with a PING of its own: on a socket
// between two processes of one machine that is one more frame, write and
// wake-up each way per job (BenchmarkPluginRoundTrip: 144–172 → 115–131 µs
// p50). 1 MiB is two output chunks in flight, which keeps a 64 MiB result
// as fast as the estimator's window did and the host's heap smaller.
const windowBytes = 1 << 20

// oneProc runs the plugin's Go code on one processor unless its
// environment sets GOMAXPROCS. A plugin's Go side moves messages between
// the host and the engine; the engine computes on threads of its own
// (ggml's and ONNX Runtime's pools, OpenMP), which GOMAXPROCS does not
// bound, and a goroutine inside a C call gives its processor up. With
// more than one, each hand-off between goroutines (the gRPC reader, the
// job worker, the writer) can wake another OS thread, a futex call and
// often a sleeping CPU: BenchmarkPluginRoundTrip 124 → 86 µs p50 on
// 2 CPUs, and fewer Go threads beside the engine's when it runs on every
// CPU. A plugin that computes in Go on several goroutines sets GOMAXPROCS
// (the agent passes it on).
func oneProc() {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
}

// A ServeOption changes how [Serve] serves.
type ServeOption func(*plugin.ServeConfig)

// WithGRPCServer makes the plugin's gRPC server with newServer, given
// go-plugin's server options (its TLS credentials among them), instead of
// grpc.NewServer: for a plugin that needs its own codec or interceptors.
func WithGRPCServer(newServer func(opts []grpc.ServerOption) *grpc.Server) ServeOption {
	return func(c *plugin.ServeConfig) { c.GRPCServer = newServer }
}

// NewLogger returns the logger a plugin should use: hclog writing JSON to
// stderr, at the level the supervisor asked for (info by default). The
// supervisor re-levels each line into its own log under the plugin's name.
func NewLogger(name string) hclog.Logger {
	level := hclog.LevelFromString(os.Getenv(EnvLogLevel))
	if level == hclog.NoLevel {
		level = hclog.Info
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:       name,
		Level:      level,
		Output:     os.Stderr,
		JSONFormat: true,
	})
}

// QuietGGMLAborts makes a ggml assertion in this process print its one
// line and abort, instead of attaching gdb to print a backtrace first
// (ggml's default when gdb is installed): that is slow, and the frames push
// the assertion line out of the stderr tail the supervisor's crash report
// carries. Plugins around ggml engines call it at the start of main. It
// leaves a GGML_NO_BACKTRACE the plugin was given alone.
func QuietGGMLAborts() {
	if _, ok := os.LookupEnv("GGML_NO_BACKTRACE"); !ok {
		os.Setenv("GGML_NO_BACKTRACE", "1")
	}
}
