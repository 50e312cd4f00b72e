package dialguard

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestReason(t *testing.T) {
	tests := []struct {
		addr string
		want string // "" public
	}{
		{"8.8.8.8", ""},
		{"2606:4700:4700::1111", ""},
		{"93.184.216.34", ""},
		{"127.0.0.1", "loopback"},
		{"127.9.9.9", "loopback"},
		{"::1", "loopback"},
		{"::ffff:127.0.0.1", "loopback"},
		{"0.0.0.0", "unspecified"},
		{"::", "unspecified"},
		{"0.1.2.3", "this-network"},
		{"10.0.0.1", "private"},
		{"172.16.5.4", "private"},
		{"172.32.0.1", ""},
		{"192.168.1.1", "private"},
		{"::ffff:192.168.1.1", "private"},
		{"fd12:3456::1", "private"},
		{"100.64.0.1", "shared (carrier-grade NAT, tailnet)"},
		{"100.128.0.1", ""},
		{"169.254.169.254", "link-local"},
		{"fe80::1", "link-local"},
		{"fe80::1%eth0", "link-local"},
		{"224.0.0.1", "multicast"},
		{"ff02::1", "multicast"},
		{"255.255.255.255", "reserved"},
		{"192.0.0.170", "IETF protocol"},
		{"198.18.0.1", "benchmarking"},
		{"fec0::1", "site-local"},
		{"64:ff9b::a00:1", "private (through NAT64)"},
		{"64:ff9b::7f00:1", "loopback (through NAT64)"},
		{"64:ff9b::808:808", ""},
		{"64:ff9b:1::1", "private NAT64"},
	}
	for _, tt := range tests {
		if got := Reason(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("Reason(%s): got %q, want %q", tt.addr, got, tt.want)
		}
	}
}

func TestPolicyCheck(t *testing.T) {
	p, err := Parse([]string{"127.0.0.0/8", "::1", "10.1.0.0/16", " mirror.LAN. ", ""})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		host string
		addr string
		ok   bool
	}{
		{"allowed network", "127.0.0.1", "127.0.0.1", true},
		{"allowed single address", "::1", "::1", true},
		{"mapped into an allowed network", "x", "::ffff:127.0.0.2", true},
		{"inside a wider allowed network", "x", "10.1.200.3", true},
		{"private outside it", "x", "10.2.0.1", false},
		{"allowed name, any address", "Mirror.lan", "192.168.7.7", true},
		{"public address", "cdn.example", "93.184.216.34", true},
		{"link-local never listed", "x", "169.254.169.254", false},
		{"localhost answering loopback", "localhost", "127.0.0.1", true},
		{"localhost answering a public address", "localhost", "93.184.216.34", false},
		{"sub.localhost answering a public address", "a.localhost.", "93.184.216.34", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := p.Check(tt.host, netip.MustParseAddr(tt.addr))
			if (err == nil) != tt.ok {
				t.Fatalf("Check(%s, %s): got %v, want ok=%v", tt.host, tt.addr, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrBlocked) {
				t.Errorf("error %v does not match ErrBlocked", err)
			}
		})
	}
	var none *Policy
	if err := none.Check("127.0.0.1", netip.MustParseAddr("127.0.0.1")); !errors.Is(err, ErrBlocked) {
		t.Errorf("nil policy, loopback: got %v, want ErrBlocked", err)
	}
	if err := none.CheckHost("[::1]"); !errors.Is(err, ErrBlocked) {
		t.Errorf("nil policy, CheckHost([::1]): got %v, want ErrBlocked", err)
	}
	if err := none.CheckHost("localhost"); err != nil {
		t.Errorf("CheckHost of a name: got %v, want nil (checked when dialled)", err)
	}
}

func TestParseRefusesBadEntries(t *testing.T) {
	for _, e := range []string{"10.0.0.0/33", "not a host", "-bad.example", "fe80::1%eth0", "a..b", "http://mirror.lan"} {
		if _, err := Parse([]string{e}); err == nil {
			t.Errorf("Parse(%q): got nil error", e)
		}
	}
}

// TestDialContextChecksTheDialledAddress: "localhost" is a name, so only
// the dial sees it is loopback; allowed, the same dial connects.
func TestDialContextChecksTheDialledAddress(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan struct{}, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- struct{}{}
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	deny, _ := Parse(nil)
	_, err = deny.DialContext(&net.Dialer{})(ctx, "tcp", net.JoinHostPort("localhost", port))
	if !errors.Is(err, ErrBlocked) {
		t.Fatalf("dial localhost without an allowance: got %v, want ErrBlocked", err)
	}
	allow, _ := Parse([]string{"127.0.0.1"})
	c, err := allow.DialContext(&net.Dialer{})(ctx, "tcp", net.JoinHostPort("127.0.0.1", port))
	if err != nil {
		t.Fatalf("dial 127.0.0.1 allowed: %v", err)
	}
	c.Close()
	select {
	case <-accepted:
	case <-ctx.Done():
		t.Fatal("the allowed dial never reached the listener")
	}
	select {
	case <-accepted:
		t.Error("the refused dial reached the listener")
	default:
	}
}
