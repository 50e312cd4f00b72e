package httpguard

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHostAllowed(t *testing.T) {
	allowed := []string{"node1.example"}
	tests := []struct {
		host string
		want bool
	}{
		{"127.0.0.1:8710", true},
		{"127.0.0.1", true},
		{"[::1]:8710", true},
		{"::1", true},
		{"192.0.2.4:8710", true}, // any IP literal: it cannot be rebound
		{"localhost:8710", true},
		{"LOCALHOST", true},
		{"node1.example:8710", true},
		{"NODE1.Example", true},
		{"evil.example:8710", false},
		{"node1.example.evil.example", false},
		{"localhost.evil.example", false},
		{"127.0.0.1.nip.io", false},
		{"", false},
		{":8710", false},
	}
	for _, tt := range tests {
		if got := HostAllowed(tt.host, allowed); got != tt.want {
			t.Errorf("HostAllowed(%q) = %v, want %v", tt.host, got, tt.want)
		}
	}
}

func TestLoopback(t *testing.T) {
	listen := []struct {
		addr string
		want bool
	}{
		{"127.0.0.1:8700", true},
		{"127.0.0.2:0", true},
		{"[::1]:8700", true},
		{"localhost:8700", true},
		{"0.0.0.0:8700", false},
		{":8700", false},
		{"[::]:8700", false},
		{"192.0.2.1:8700", false},
		{"studio.example:8700", false},
		{"127.0.0.1", false}, // no port: not an address
	}
	for _, tt := range listen {
		if got := LoopbackListen(tt.addr); got != tt.want {
			t.Errorf("LoopbackListen(%q) = %v, want %v", tt.addr, got, tt.want)
		}
	}
	peers := []struct {
		addr string
		want bool
	}{
		{"127.0.0.1:5000", true},
		{"[::1]:5000", true},
		{"[::ffff:127.0.0.1]:5000", true},
		{"192.0.2.7:5000", false},
		{"[2001:db8::1]:5000", false},
		{"garbage", false},
	}
	for _, tt := range peers {
		if got := LoopbackPeer(tt.addr); got != tt.want {
			t.Errorf("LoopbackPeer(%q) = %v, want %v", tt.addr, got, tt.want)
		}
	}
	if !LoopbackAddr(&net.TCPAddr{IP: net.IPv6loopback}) || LoopbackAddr(&net.TCPAddr{IP: net.IPv4zero}) {
		t.Error("LoopbackAddr is wrong on ::1 or 0.0.0.0")
	}
}

func TestCheckJSONPost(t *testing.T) {
	cop := http.NewCrossOriginProtection()
	tests := []struct {
		name   string
		header map[string]string
		want   int // 0: passes
	}{
		{"curl with JSON", map[string]string{"Content-Type": "application/json"}, 0},
		{"charset", map[string]string{"Content-Type": "application/json; charset=utf-8"}, 0},
		{"same-origin fetch", map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "same-origin"}, 0},
		{"no content type", nil, http.StatusUnsupportedMediaType},
		{"text/plain", map[string]string{"Content-Type": "text/plain"}, http.StatusUnsupportedMediaType},
		{"form", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, http.StatusUnsupportedMediaType},
		{"cross-site", map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"foreign origin", map[string]string{"Content-Type": "application/json", "Origin": "http://evil.example"}, http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:8710/v1/pause", strings.NewReader("{}"))
			for k, v := range tt.header {
				r.Header.Set(k, v)
			}
			err := CheckJSONPost(r, cop)
			switch {
			case tt.want == 0 && err != nil:
				t.Errorf("refused: %v", err)
			case tt.want != 0 && (err == nil || StatusOf(err) != tt.want):
				t.Errorf("got %v (status %d), want status %d", err, StatusOf(err), tt.want)
			}
		})
	}
}
