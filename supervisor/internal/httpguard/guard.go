// Package httpguard holds the checks the node's own HTTP servers (the
// local API and the dev studio) apply against what a web browser can be
// made to send on a hostile page's behalf, and against listening where
// strangers can reach them:
//
//   - DNS rebinding: a page on a name its owner re-points at 127.0.0.1 is
//     same-origin with a server on loopback and can read every answer.
//     [HostAllowed] accepts only Host values no rebinding can forge.
//   - Cross-site requests: a page on another site can POST to loopback
//     without a CORS preflight when the body is text/plain or a form.
//     [CheckJSONPost] wants application/json (which needs a preflight no
//     server here approves) and refuses cross-origin browser requests.
//   - Exposure: [LoopbackListen], [LoopbackAddr] and [LoopbackPeer] say
//     whether an address can only be reached from this machine.
//
// It imports the standard library only; any package may use it.
package httpguard

import (
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"strings"
)

// Refusal is a request a guard turns away, with the HTTP status to
// answer.
type Refusal struct {
	Status int
	Msg    string
}

func (e *Refusal) Error() string { return e.Msg }

// StatusOf is the HTTP status for err: a Refusal's own, else 400.
func StatusOf(err error) int {
	if r, ok := errors.AsType[*Refusal](err); ok {
		return r.Status
	}
	return http.StatusBadRequest
}

// HostAllowed reports whether a Host header (with or without port) names
// this node in a way DNS rebinding cannot forge: an IP literal,
// "localhost", or one of allowed (compared without case). A hostile page
// can only make a browser send its own name, which is none of these.
func HostAllowed(hostport string, allowed []string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "" {
		return false
	}
	if net.ParseIP(host) != nil || strings.EqualFold(host, "localhost") {
		return true
	}
	for _, a := range allowed {
		if strings.EqualFold(host, a) {
			return true
		}
	}
	return false
}

// CheckHost is HostAllowed as a Refusal (403) naming the host.
func CheckHost(r *http.Request, allowed []string) error {
	if HostAllowed(r.Host, allowed) {
		return nil
	}
	return &Refusal{http.StatusForbidden, fmt.Sprintf("host %q not allowed; add it to the allowed hosts or use an IP address", r.Host)}
}

// CheckJSONPost refuses what a page on another site can send: a body that
// is not application/json (415) and a cross-origin browser request (403,
// by Sec-Fetch-Site and Origin through cop). Callers without either header
// (curl, workers, Prometheus) pass.
func CheckJSONPost(r *http.Request, cop *http.CrossOriginProtection) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return &Refusal{http.StatusUnsupportedMediaType, "want Content-Type: application/json"}
	}
	return CheckCrossOrigin(r, cop)
}

// CheckCrossOrigin refuses a cross-origin browser request (403).
func CheckCrossOrigin(r *http.Request, cop *http.CrossOriginProtection) error {
	if err := cop.Check(r); err != nil {
		return &Refusal{http.StatusForbidden, fmt.Sprintf("cross-origin request refused: %v", err)}
	}
	return nil
}

// LoopbackHost reports whether host (no port) is a loopback IP literal or
// "localhost".
func LoopbackHost(host string) bool {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// LoopbackListen reports whether a listen address ("host:port") binds
// loopback only. An empty host, 0.0.0.0, :: and any name but localhost
// are not (a name is not resolved here; check the bound address with
// LoopbackAddr too).
func LoopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	return err == nil && LoopbackHost(host)
}

// LoopbackAddr reports whether a bound address is a loopback one.
func LoopbackAddr(a net.Addr) bool {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.IsLoopback()
	}
	return LoopbackListen(a.String())
}

// LoopbackPeer reports whether a request's RemoteAddr is a loopback
// address, that is, whether the peer is on this machine.
func LoopbackPeer(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
