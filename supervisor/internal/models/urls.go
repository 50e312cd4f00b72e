package models

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/stokerhq/stoker/supervisor/internal/dialguard"
)

// urlPolicy decides which URLs the store requests.
type urlPolicy struct {
	allowLoopbackHTTP bool
	maxRedirects      int
	guard             *dialguard.Policy // checks a literal host here, and every dialled address
}

// check returns nil when u may be requested: https to any host, or http to
// a loopback host (127.0.0.0/8, ::1, localhost) when allowed. Every other
// scheme is refused, and so is a URL carrying credentials, and an IP
// literal the guard refuses (a name is checked on the addresses it
// resolves to, when dialled).
func (p urlPolicy) check(u *url.URL) error {
	switch strings.ToLower(u.Scheme) {
	case "https", "http":
	case "":
		return refusedf("url has no scheme")
	default:
		return refusedf("scheme %q", u.Scheme)
	}
	if u.User != nil {
		return refusedf("url carries credentials")
	}
	if u.Hostname() == "" {
		return refusedf("url has no host")
	}
	if err := p.guard.CheckHost(u.Hostname()); err != nil {
		return blockedError(err)
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
		return nil
	default: // http
		if !isLoopbackHost(u.Hostname()) {
			return refusedf("plain http to non-loopback host %q", u.Hostname())
		}
		if !p.allowLoopbackHTTP {
			return refusedf("plain http refused by configuration")
		}
		return nil
	}
}

// parse parses raw and checks it against the policy.
func (p urlPolicy) parse(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // the url.Error would repeat the raw URL
		}
		return nil, refusedf("bad url: %v", err)
	}
	if err := p.check(u); err != nil {
		return nil, err
	}
	return u, nil
}

// checkRedirect is an http.Client CheckRedirect that follows at most
// maxRedirects redirects, each to a URL the policy allows, and none from
// https to http.
func (p urlPolicy) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > p.maxRedirects {
		return refusedf("more than %d redirects", p.maxRedirects)
	}
	if err := p.check(req.URL); err != nil {
		return fmt.Errorf("redirect to %s: %w", redactURL(req.URL.String()), err)
	}
	// Never from https down to http, even to loopback: a remote server must
	// not be able to point the worker at its own local services.
	if strings.EqualFold(via[0].URL.Scheme, "https") && !strings.EqualFold(req.URL.Scheme, "https") {
		return fmt.Errorf("redirect to %s: %w", redactURL(req.URL.String()), refusedf("https redirected to plain http"))
	}
	return nil
}

// blockedError turns a dialguard refusal into a refusal of the store.
func blockedError(err error) error {
	return fmt.Errorf("%w: %w (a node connects to such an address only when its fetch_allow lists it)", ErrRefused, err)
}

// isLoopbackHost reports whether host is "localhost" or a loopback IP
// literal. Names other than localhost are not resolved: a DNS answer is not
// proof of loopback.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
