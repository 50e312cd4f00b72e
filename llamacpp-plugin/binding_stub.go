//go:build !llamacpp

package main

import (
	"context"

	"github.com/hashicorp/go-hclog"
	"github.com/stokerhq/stoker/plugins"
)

// notBuilt is why a binary built without the llamacpp tag cannot serve.
const notBuilt = "llama.cpp not built in (build with -tags llamacpp)"

// llamaModel is never created in a build without llama.cpp.
type llamaModel struct{ offloaded, layers int }

func backendInfo() (plugins.Device, bool, string) {
	return plugins.Device{Backend: "cpu"}, false, notBuilt
}

func backendNames() []string { return nil }

func loadModel(ctx context.Context, path string, gpuLayers int, log hclog.Logger) (*llamaModel, error) {
	return nil, plugins.Errorf(plugins.ErrEngine, "%s", notBuilt)
}

func (m *llamaModel) free()                    {}
func (m *llamaModel) nCtxTrain() int           { return 0 }
func (m *llamaModel) sizeBytes(int) uint64     { return 0 }
func (m *llamaModel) piece(int32, bool) []byte { return nil }
func (m *llamaModel) tokenize(string) ([]int32, error) {
	return nil, plugins.Errorf(plugins.ErrEngine, "%s", notBuilt)
}
func (m *llamaModel) applyTemplate([]plugins.Message) (string, error) {
	return "", plugins.Errorf(plugins.ErrEngine, "%s", notBuilt)
}
func (m *llamaModel) generate(context.Context, genParams, func(int32, []byte) error) (genResult, error) {
	return genResult{}, plugins.Errorf(plugins.ErrEngine, "%s", notBuilt)
}
