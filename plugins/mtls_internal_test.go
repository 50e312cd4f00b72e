package plugins

import (
	"crypto/tls"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// serverTLS uses a pair the host passed down a descriptor, leaves
// AutoMTLS to go-plugin when none was passed, and refuses, with a reason,
// a descriptor that holds no usable pair; the variable is gone after.
func TestServerTLS(t *testing.T) {
	lt, err := newLaunchTLS()
	if err != nil {
		t.Fatal(err)
	}
	pass := func(t *testing.T, b []byte) {
		r, err := pipeWith(b)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		// A descriptor of serverTLS's own, as the child's would be: it
		// closes what it reads.
		fd, err := syscall.Dup(int(r.Fd()))
		if err != nil {
			t.Fatal(err)
		}
		t.Setenv(EnvTLSFD, strconv.Itoa(fd))
	}
	t.Run("none passed", func(t *testing.T) {
		os.Unsetenv(EnvTLSFD)
		if tc, err := serverTLS(); tc != nil || err != nil {
			t.Errorf("serverTLS() = %v, %v; want nothing: go-plugin makes the certificate", tc, err)
		}
	})
	for _, c := range []struct {
		name, fd string
		pair     []byte
		hostCert string
		want     string // in the error; "" for a config
	}{
		{name: "the host's pair", pair: lt.serverPEM, hostCert: string(lt.clientPEM)},
		{name: "not a descriptor", fd: "stdin", want: "not a descriptor above stderr"},
		{name: "stderr", fd: "2", want: "not a descriptor above stderr"},
		{name: "garbage", pair: []byte("not PEM at all"), hostCert: string(lt.clientPEM), want: "the TLS pair from"},
		{name: "a certificate without its key", pair: lt.clientPEM, hostCert: string(lt.clientPEM), want: "the TLS pair from"},
		{name: "no host certificate", pair: lt.serverPEM, want: "without the host's certificate"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("PLUGIN_CLIENT_CERT", c.hostCert)
			if c.fd != "" {
				t.Setenv(EnvTLSFD, c.fd)
			} else {
				pass(t, c.pair)
			}
			tc, err := serverTLS()
			if _, still := os.LookupEnv(EnvTLSFD); still {
				t.Errorf("%s still set", EnvTLSFD)
			}
			if c.want != "" {
				if err == nil || !strings.Contains(err.Error(), c.want) {
					t.Errorf("serverTLS() error %v, want one saying %q", err, c.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.ClientAuth != tls.RequireAndVerifyClientCert || tc.ClientCAs == nil || len(tc.Certificates) != 1 {
				t.Errorf("config %+v: want the pair, and the host's certificate required", tc)
			}
		})
	}
}
