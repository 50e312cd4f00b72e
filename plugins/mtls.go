package plugins

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"strconv"
	"time"
)

// The host and its plugins talk gRPC over mutual TLS, as go-plugin's
// AutoMTLS does: the host hands the plugin its client certificate in
// PLUGIN_CLIENT_CERT, and each side accepts only the other's certificate.
// AutoMTLS makes every certificate on a P-521 key, which costs a plugin
// process about two thirds of its start here: the curve's tables are built
// on first use in each new process, and a P-521 signature check takes
// ~2.8 ms; a relaunch and a warm spare wait for all of it.
//
// So the host makes both certificates itself, on P-256 keys (a few hundred
// microseconds for the pair), and passes the plugin's certificate and key
// down a pipe whose descriptor EnvTLSFD names: nothing in the environment
// or on disk, and gone once read. A plugin built on this SDK serves with
// them. Any other plugin (another language, an older SDK) ignores the
// descriptor and answers AutoMTLS's way, with a certificate of its own in
// the handshake line, which go-plugin's client then trusts instead: on the
// wire it is AutoMTLS either way.

// EnvTLSFD names the descriptor from which a plugin reads the certificate
// and key it serves with (PEM, certificate then key).
const EnvTLSFD = "STOKER_PLUGIN_TLS_FD"

// maxTLSBytes bounds what a plugin reads from the descriptor.
const maxTLSBytes = 64 << 10

// launchTLS is one launch's certificates: the host's TLS config, the
// client certificate for PLUGIN_CLIENT_CERT, and the plugin's certificate
// and key for its descriptor.
type launchTLS struct {
	config    *tls.Config
	clientPEM []byte
	serverPEM []byte
}

// newLaunchTLS makes a fresh pair for one plugin process.
func newLaunchTLS() (*launchTLS, error) {
	// The host's key stays in the host: only it can prove it is the host.
	clientCert, clientPEM, _, err := selfSigned()
	if err != nil {
		return nil, err
	}
	serverCert, serverPEM, serverKey, err := selfSigned()
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(serverCert.Leaf)
	return &launchTLS{
		config: &tls.Config{
			Certificates: []tls.Certificate{clientCert},
			RootCAs:      roots,
			ServerName:   "localhost",
			MinVersion:   tls.VersionTLS12,
		},
		clientPEM: clientPEM,
		serverPEM: append(serverPEM, serverKey...),
	}, nil
}

// selfSigned makes a certificate for "localhost" on a new P-256 key, good
// for client and server authentication, that signs itself (each side
// trusts exactly the other's certificate, as its own root). It returns the
// parsed pair, the certificate's PEM and the key's PEM.
func selfSigned() (tls.Certificate, []byte, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, nil, fmt.Errorf("plugin TLS key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return tls.Certificate{}, nil, nil, fmt.Errorf("plugin TLS serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "localhost", Organization: []string{"stoker plugin"}},
		DNSNames:     []string{"localhost"},
		// A plugin may run for years; its certificate must not end first.
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(30 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, nil, fmt.Errorf("plugin TLS certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, nil, fmt.Errorf("plugin TLS certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return tls.Certificate{}, nil, nil, fmt.Errorf("plugin TLS key: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, certPEM, keyPEM, nil
}

// serverTLS is the plugin's side: the TLS config to serve with, from the
// certificate and key on the descriptor EnvTLSFD names and the host's
// certificate in PLUGIN_CLIENT_CERT. It returns nil (go-plugin's AutoMTLS
// then makes the plugin's certificate) when the host passed no descriptor,
// and an error when it passed one that does not hold a usable pair. The
// variable is removed, so nothing the plugin starts inherits it.
func serverTLS() (*tls.Config, error) {
	v, ok := os.LookupEnv(EnvTLSFD)
	if !ok {
		return nil, nil
	}
	os.Unsetenv(EnvTLSFD)
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return nil, fmt.Errorf("%s=%q: not a descriptor above stderr", EnvTLSFD, v)
	}
	f := os.NewFile(uintptr(fd), "plugin-tls")
	defer f.Close()
	pair, err := io.ReadAll(io.LimitReader(f, maxTLSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read the TLS pair from %s=%d: %w", EnvTLSFD, fd, err)
	}
	defer clear(pair)
	if len(pair) > maxTLSBytes {
		return nil, fmt.Errorf("the TLS pair from %s=%d is over %d bytes", EnvTLSFD, fd, maxTLSBytes)
	}
	cert, err := tls.X509KeyPair(pair, pair)
	if err != nil {
		return nil, fmt.Errorf("the TLS pair from %s=%d: %w", EnvTLSFD, fd, err)
	}
	host := x509.NewCertPool()
	if !host.AppendCertsFromPEM([]byte(os.Getenv("PLUGIN_CLIENT_CERT"))) {
		return nil, errors.New("a TLS pair came without the host's certificate (PLUGIN_CLIENT_CERT)")
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    host,
		MinVersion:   tls.VersionTLS12,
	}, nil
}

// pipeWith returns the read end of a pipe that holds b and then ends; b
// must fit the pipe's buffer (64 KiB on Linux), which a TLS pair does.
func pipeWith(b []byte) (*os.File, error) {
	if len(b) > maxTLSBytes {
		return nil, fmt.Errorf("%d bytes do not fit a pipe's buffer", len(b))
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	_, err = w.Write(b)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}
