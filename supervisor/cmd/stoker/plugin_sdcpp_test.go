//go:build sdcpp

package main

import (
	"testing"

	"github.com/stokerhq/stoker/sdcpp-plugin/sdmodel"
)

// TestPluginCheckSDCpp: the stable-diffusion.cpp plugin conforms, and
// draws the sample image with the tiny sd.
func TestPluginCheckSDCpp(t *testing.T) {
	t.Parallel()
	checkEngine(t, "sdcpp-plugin", "sdcpp", sdmodel.TinySDFilename, sdmodel.WriteTinySD, "image", "")
}
