//go:build !sdcpp

package main

import (
	"context"
	"errors"

	"github.com/stokerhq/stoker/plugins"
)

// This file stands in for binding_sdcpp.go when the plugin is built
// without the sdcpp tag: the plugin runs, describes itself as not ready,
// and fails every job with an engine error.

const notBuiltReason = "stable-diffusion.cpp not built in (build with -tags sdcpp)"

var errNotBuilt = errors.New(notBuiltReason)

func engineStatus() (ready bool, reason string) { return false, notBuiltReason }

func missingVocabularies() []string { return nil }

func systemInfo() string { return "" }

func engineSampleMethodName(i int) string { return "" }

// sdContext is a loaded context; never created in this build.
type sdContext struct{}

func loadContext(key contextKey, threads int, obs *observer) (*sdContext, error) {
	return nil, errNotBuilt
}

func (c *sdContext) free() {}

func (c *sdContext) generate(ctx context.Context, j *job, imgs *jobImages, obs *observer) (*rgbImage, error) {
	return nil, errNotBuilt
}

func loadImage(path string, w, h, channels int) (*rgbImage, error) {
	return nil, plugins.Errorf(plugins.ErrEngine, "%w", errNotBuilt)
}

func whiteMask(w, h int) *rgbImage { return &rgbImage{Width: w, Height: h, Channels: 1} }

func (m *rgbImage) release() {}

func encodeWebP(m *rgbImage, quality float32) ([]byte, error) { return nil, errNotBuilt }
