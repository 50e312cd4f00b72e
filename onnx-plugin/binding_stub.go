//go:build !onnx

package main

import (
	"context"
	"errors"

	"github.com/stokerhq/stoker/plugins"
)

// This file stands in for binding_onnx.go when the plugin is built without
// the onnx tag: the plugin runs, describes itself as not ready, and fails
// every job with an engine error.

const notBuiltReason = "ONNX Runtime not built in (build with -tags onnx)"

func engineStatus(library, provider string) (ready bool, reason string) { return false, notBuiltReason }

// model is a loaded session; never created in this build.
type model struct{ sig *signature }

func loadModel(library, provider, path string, threads int) (*model, error) {
	return nil, plugins.Errorf(plugins.ErrEngine, "%w", errors.New(notBuiltReason))
}

func (m *model) free() {}

func (m *model) run(ctx context.Context, img, mask []float32, pw, ph int, ev plugins.Events) ([]float32, error) {
	return nil, errors.New(notBuiltReason)
}
