package plugins_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/stokerhq/stoker/internal/syncbuf"
	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/plugins/plugintest"
)

// The host and a plugin talk over mutual TLS either way: a plugin of this
// SDK serves with the certificate the host made for it (its handshake line
// carries none), and a plugin that knows nothing of that (another
// language, an older SDK) makes its own, AutoMTLS's way, and is trusted
// with it.
func TestMutualTLSEitherWay(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, serve string
		ownCert     bool
	}{
		{"the host's pair", "1", false},
		{"the plugin's own certificate", serveAutoMTLS, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			var stdout syncbuf.Buffer
			p, err := plugins.Launch(plugins.LaunchConfig{Path: exe, Env: []string{envServe + "=" + c.serve}, Stdout: &stdout})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Kill()
			rec, err := plugintest.Run(context.Background(), p, llm("over TLS"))
			if err != nil {
				t.Fatal(err)
			}
			if got := string(rec.JSON()); got != `{"echo":"over TLS"}` {
				t.Errorf("result %s", got)
			}
			line, _, _ := strings.Cut(stdout.String(), "\n")
			fields := strings.Split(line, "|")
			if len(fields) < 6 {
				t.Fatalf("handshake line %q", line)
			}
			if own := fields[5] != ""; own != c.ownCert {
				t.Errorf("handshake line %q: a certificate of the plugin's own: %t, want %t", line, own, c.ownCert)
			}
		})
	}
}
