// Package check validates the orchestrator files of deploy/ with what can
// run without a cluster: the Kubernetes manifests decoded strictly into the
// Kubernetes API's own types (k8s.io/api: an unknown or misspelt field, or a
// value of the wrong type, fails), the Nomad job parsed as HCL, the parts
// stoker depends on checked in both (probes, GPU, state volume, stop
// grace), and the stoker config each carries loaded by `stoker config
// validate`. It is a module of its own so that the Kubernetes and HCL
// libraries stay out of stoker's. Neither file is run here: this
// repository's CI has no Kubernetes or Nomad cluster.
package check
