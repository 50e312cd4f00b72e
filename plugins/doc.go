// Package plugins is the SDK for stoker engine plugins and the host side
// the supervisor uses to run them.
//
// # For plugin authors
//
// An engine plugin is a program named "<name>-plugin" whose main calls
// [Serve] with an implementation of [Engine]:
//
//	func main() {
//		plugins.Serve(myengine.New(plugins.NewLogger("myengine")))
//	}
//
// The supervisor starts the program through hashicorp/go-plugin (gRPC, with
// mutual TLS generated per launch), calls Describe, and sends it jobs: on
// one long-lived Jobs stream per process (jobs_client.go, and the Jobs
// handler in grpc_server.go), or with a Run call per job to a plugin that
// does not serve Jobs. Everything a job needs is in the [RunRequest]: model files and inputs
// are already on local disk. The plugin logs through hclog as JSON on stderr
// ([NewLogger]); the supervisor folds those lines into its own log under the
// plugin's name and keeps the last of them for crash reports.
//
// The contract itself is the Go interface [Engine]; the gRPC service in
// proto/engine/v1 is an adapter around it. The generated types stay inside
// that adapter: convert.go converts between them and the Go types, and the
// gRPC client and server (grpc_client.go, jobs_client.go, grpc_server.go,
// with the host's own decoding of a job's events in wire_codec.go) make the
// calls; no
// exported name of this package carries a generated type. Plugins in other
// languages implement that service directly and speak go-plugin's
// handshake ([Handshake]).
//
// # For the supervisor
//
// [Launch] starts a plugin process and returns a [*Plugin], which implements
// [Engine] over gRPC and adds what a host needs: the process's exit status,
// a channel closed when it exits, its last stderr lines, and Kill.
package plugins
