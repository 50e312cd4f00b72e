//go:build !whispercpp

package main

import (
	"context"
	"errors"
	"runtime"

	"github.com/stokerhq/stoker/plugins"
)

// This file stands in for binding_whisper.go when the plugin is built
// without the whispercpp tag: the plugin runs, describes itself as not
// ready, and fails every job with an engine error.

const notBuiltReason = "whisper.cpp not built in (build with -tags whispercpp)"

var errNotBuilt = errors.New(notBuiltReason)

func engineStatus() (ready bool, reason string) { return false, notBuiltReason }

func deviceInfo() plugins.Device {
	return plugins.Device{Backend: "cpu", Name: runtime.GOARCH}
}

func languageCode(lang string) (string, bool) { return "", false }

// model is a loaded whisper model; never created in this build.
type model struct{}

func loadModel(path string, threads int) (*model, error) { return nil, errNotBuilt }

func (m *model) close() {}

func (m *model) multilingual() bool { return false }

func (m *model) transcribe(ctx context.Context, pcm []float32, p transcribeParams, progress func(pct int) error) (*transcript, error) {
	return nil, errNotBuilt
}
