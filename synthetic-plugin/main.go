// Command synthetic-plugin is the synthetic engine plugin: deterministic
// placeholder outputs for every task kind, served to the stoker agent over
// go-plugin. Drop it next to the stoker executable (or into plugin_dir).
// See package github.com/stokerhq/stoker/synthetic-plugin/synthetic.
package main

import (
	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/synthetic-plugin/synthetic"
)

func main() {
	plugins.Serve(synthetic.New(plugins.NewLogger("synthetic")))
}
