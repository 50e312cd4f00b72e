// Package dialguard decides which addresses the node may connect to when a
// studio names the target: model files and task inputs. By default only
// public unicast addresses: a URL may not make the node reach its own
// loopback, its LAN, a cloud metadata service (169.254.169.254) or
// anything else a remote studio could not reach itself. An operator's
// allow-list (the agent's fetch_allow) opens networks and host names for
// local mirrors and test servers.
//
// The check runs on the address actually dialled, after name resolution,
// for every connection, redirects included: [Policy.DialContext] is an
// http.Transport DialContext whose net.Dialer Control refuses a refused
// address before the connect. Checking a URL's host name instead would be
// fooled by a name that resolves to 127.0.0.1, and by DNS rebinding.
//
// It imports the standard library only; the model store and the config
// use it.
package dialguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
)

// ErrBlocked matches every refusal of this package. Test with errors.Is.
var ErrBlocked = errors.New("dialguard: address not allowed")

// BlockedError is a refused address.
type BlockedError struct {
	Host   string     // the host name or literal asked for ("" when unknown)
	Addr   netip.Addr // the address refused
	Reason string     // what kind of address it is: "loopback", "private", …
}

func (e *BlockedError) Error() string {
	who := e.Addr.String()
	if e.Host != "" && e.Host != who {
		who = e.Host + " (" + who + ")"
	}
	return fmt.Sprintf("dialguard: %s is a %s address; not allowed", who, e.Reason)
}

func (e *BlockedError) Is(target error) bool { return target == ErrBlocked }

// Policy is a parsed allow-list. The zero value and nil allow public
// addresses only. A Policy is immutable and safe for concurrent use.
type Policy struct {
	prefixes []netip.Prefix
	names    map[string]bool // lower case, no trailing dot
}

// Parse parses allow-list entries: a network in CIDR form ("10.1.0.0/16",
// "fd00::/8"), a single address ("127.0.0.1", "::1"), or a host name
// ("mirror.lan"; every address it resolves to is then allowed, so only name
// hosts whose DNS you trust). Empty entries are ignored.
func Parse(entries []string) (*Policy, error) {
	p := &Policy{names: map[string]bool{}}
	var errs []error
	for _, e := range entries {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		if pfx, err := netip.ParsePrefix(e); err == nil {
			p.prefixes = append(p.prefixes, pfx.Masked())
			continue
		}
		if a, err := netip.ParseAddr(e); err == nil {
			if a.Zone() != "" {
				errs = append(errs, fmt.Errorf("%q: an address with a zone cannot be allowed", e))
				continue
			}
			a = a.Unmap()
			p.prefixes = append(p.prefixes, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		name := normalName(e)
		if !validName(name) {
			errs = append(errs, fmt.Errorf("%q: want a CIDR network, an IP address or a host name", e))
			continue
		}
		p.names[name] = true
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("dialguard: %w", errors.Join(errs...))
	}
	return p, nil
}

// Check returns nil when addr, one of the addresses of host (a name or an
// IP literal, as in a URL), may be dialled, and a *BlockedError otherwise:
//
//   - a name that is "localhost" or ends in ".localhost" must resolve to a
//     loopback address (RFC 6761), allowed or not;
//   - an address in an allowed network, or any address of an allowed name,
//     is allowed;
//   - otherwise a public unicast address is allowed, and loopback, private,
//     shared (100.64.0.0/10), link-local, unspecified, multicast and
//     reserved addresses are refused.
func (p *Policy) Check(host string, addr netip.Addr) error {
	addr = addr.Unmap().WithZone("")
	name := normalName(host)
	if (name == "localhost" || strings.HasSuffix(name, ".localhost")) && !addr.IsLoopback() {
		return &BlockedError{Host: host, Addr: addr, Reason: "non-loopback"}
	}
	if p != nil {
		if p.names[name] {
			return nil
		}
		for _, pfx := range p.prefixes {
			if pfx.Contains(addr) {
				return nil
			}
		}
	}
	if r := Reason(addr); r != "" {
		return &BlockedError{Host: host, Addr: addr, Reason: r}
	}
	return nil
}

// CheckHost checks a URL's host before any request: an IP literal as
// Check does; a name passes, to be checked on each address it resolves to
// when dialled. It lets a caller refuse http://127.0.0.1/ without a
// connection attempt, and refuse a literal even where a proxy, not this
// process, makes the connection.
func (p *Policy) CheckHost(host string) error {
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return p.Check(host, a)
	}
	return nil
}

// Reason returns the kind of a non-public address ("loopback", "private",
// …), or "" for a public unicast one.
func Reason(a netip.Addr) string {
	a = a.Unmap()
	switch {
	case !a.IsValid():
		return "invalid"
	case a.IsUnspecified():
		return "unspecified" // 0.0.0.0 and :: reach the local host
	case a.IsLoopback():
		return "loopback"
	case a.IsPrivate():
		return "private"
	case a.IsLinkLocalUnicast():
		return "link-local" // 169.254.169.254: cloud metadata
	case a.IsMulticast():
		return "multicast"
	}
	for _, r := range reserved {
		if r.pfx.Contains(a) {
			if r.embedsV4 {
				// NAT64 (RFC 6052): the gateway connects to the
				// embedded IPv4 address.
				b := a.As16()
				if why := Reason(netip.AddrFrom4([4]byte(b[12:]))); why != "" {
					return why + " (through NAT64)"
				}
				return ""
			}
			return r.reason
		}
	}
	return ""
}

// reserved lists the refused ranges that netip has no predicate for.
var reserved = []struct {
	pfx      netip.Prefix
	reason   string
	embedsV4 bool
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "this-network", false},
	{netip.MustParsePrefix("100.64.0.0/10"), "shared (carrier-grade NAT, tailnet)", false},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol", false},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking", false},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved", false}, // broadcast included
	{netip.MustParsePrefix("fec0::/10"), "site-local", false},
	{netip.MustParsePrefix("64:ff9b::/96"), "", true},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "private NAT64", false},
}

// DialContext returns a function for http.Transport.DialContext that
// dials through a copy of d (whose own Control, if any, is replaced) and
// refuses, before connecting, every address Check refuses. Each address
// tried is checked: every answer of a name, every redirect hop.
func (p *Policy) DialContext(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		dd := *d
		dd.ControlContext = nil
		dd.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("dialguard: cannot check %q: %w", address, ErrBlocked)
			}
			return p.Check(host, ap.Addr())
		}
		return dd.DialContext(ctx, network, addr)
	}
}

func normalName(h string) string { return strings.TrimSuffix(strings.ToLower(h), ".") }

// validName reports whether n is a plausible DNS host name: labels of
// letters, digits, '-' and '_', 1 to 63 bytes each.
func validName(n string) bool {
	if n == "" || len(n) > 253 {
		return false
	}
	for _, label := range strings.Split(n, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
