package plugins

import plugin "github.com/hashicorp/go-plugin"

// Handshake is the go-plugin handshake every engine plugin answers. The magic
// cookie only tells a plugin that it was started by stoker (so a person who
// runs a plugin binary by hand gets a helpful message); it is not a security
// measure. ProtocolVersion is the contract version.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ContractVersion,
	MagicCookieKey:   "STOKER_ENGINE_PLUGIN",
	MagicCookieValue: "5f1d0c8e-stoker-engine-contract",
}

// pluginName is the name the engine is dispensed under in go-plugin's plugin
// set.
const pluginName = "engine"

// maxChunk bounds the data of one output chunk so no gRPC message comes near
// the 1 MiB limit.
const maxChunk = 512 << 10

// pluginSet returns the versioned plugin sets for host and plugin. impl is
// nil on the host side.
func pluginSet(impl Engine) map[int]plugin.PluginSet {
	return map[int]plugin.PluginSet{
		ContractVersion: {pluginName: &grpcPlugin{impl: impl}},
	}
}

// PluginMap returns the go-plugin plugin set that serves impl under
// [PluginName]. Hosts and plugins never need it ([Launch] and [Serve] use
// it); it is exported for harnesses such as plugintest that connect an
// engine through go-plugin's in-process test connection. What such a
// connection dispenses implements [Engine] and [ModelManager].
func PluginMap(impl Engine) plugin.PluginSet { return pluginSet(impl)[ContractVersion] }

// PluginName is the name the engine is dispensed under.
const PluginName = pluginName
