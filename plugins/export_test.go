package plugins

import (
	"os"
	"testing"

	plugin "github.com/hashicorp/go-plugin"
)

// SetAfterVerify makes Launch call f between its checks and the exec, for
// the test's duration.
func SetAfterVerify(t testing.TB, f func(path string)) {
	afterVerify = f
	t.Cleanup(func() { afterVerify = nil })
}

// ServeAutoMTLS serves e as a plugin that knows nothing of the host's TLS
// pair (another language, an older SDK): go-plugin's AutoMTLS makes its
// certificate and sends it in the handshake line.
func ServeAutoMTLS(e Engine) {
	os.Unsetenv(EnvTLSFD)
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: pluginSet(e),
		GRPCServer:       plugin.DefaultGRPCServer,
		Logger:           NewLogger("plugin"),
	})
}
