package models

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
)

// TestFetchRefusesLocalTargetsByDefault: without an allowance, no URL —
// loopback by literal or by name, https or http, a model file or a task
// input, directly or through a redirect — makes the store connect to a
// loopback address. The check is on the address dialled, so a name that
// resolves to loopback is caught too.
func TestFetchRefusesLocalTargetsByDefault(t *testing.T) {
	o := newOrigin(t)
	o.serveBytes("/x.wav", []byte("RIFF\x04\x00\x00\x00WAVE"))
	tlsO := newTLSOrigin(t)
	tlsO.serveBytes("/x.wav", []byte("RIFF\x04\x00\x00\x00WAVE"))
	byName := strings.Replace(o.URL, "127.0.0.1", "localhost", 1)
	tlsByName := strings.Replace(tlsO.URL, "127.0.0.1", "localhost", 1)

	tests := []struct {
		name  string
		url   string
		tls   bool
		input bool
	}{
		{"http loopback literal", o.URL + "/x.wav", false, false},
		{"http localhost", byName + "/x.wav", false, false},
		{"https loopback literal", tlsO.URL + "/x.wav", true, false},
		{"https localhost", tlsByName + "/x.wav", true, false},
		{"http ipv4-mapped loopback", strings.Replace(o.URL, "127.0.0.1", "[::ffff:127.0.0.1]", 1) + "/x.wav", false, false},
		{"input over http loopback", o.URL + "/x.wav", false, true},
		{"input over https localhost", tlsByName + "/x.wav", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Allow = nil
			if tt.tls {
				cfg.HTTPClient = tlsO.Client()
			}
			s := openStore(t, cfg)
			var err error
			if tt.input {
				_, err = s.FetchInput(context.Background(), tt.url, InputAudio, t.TempDir())
			} else {
				_, err = s.Fetch(context.Background(), "m", []File{{URL: tt.url, Filename: "x.bin"}})
			}
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("got %v, want ErrRefused", err)
			}
			t.Logf("error: %v", err)
		})
	}
	if n := o.total() + tlsO.total(); n != 0 {
		t.Errorf("requests: got %d, want 0", n)
	}
}

// TestFetchRefusesRedirectsToRefusedAddresses: an allowed host redirects
// to one that is not; the redirect is not followed. (A literal target is
// refused before connecting; a name goes through the same checking dialer
// as every connection, which TestFetchRefusesLocalTargetsByDefault's
// localhost cases cover.)
func TestFetchRefusesRedirectsToRefusedAddresses(t *testing.T) {
	o := newOrigin(t)
	o.serveBytes("/x.bin", []byte("payload"))
	o.mux.HandleFunc("/hop", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, o.URL+"/x.bin", http.StatusFound) // to 127.0.0.1, not allowed
	})
	byName := strings.Replace(o.URL, "127.0.0.1", "localhost", 1)
	cfg := testConfig(t)
	cfg.Allow = []string{"localhost"}
	s := openStore(t, cfg)
	if _, err := s.Fetch(context.Background(), "m", []File{{URL: byName + "/x.bin", Filename: "direct.bin"}}); err != nil {
		t.Fatalf("Fetch from the allowed name: %v", err)
	}
	_, err := s.Fetch(context.Background(), "m", []File{{URL: byName + "/hop", Filename: "x.bin"}})
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("Fetch through the redirect: got %v, want ErrRefused", err)
	}
	if strings.Count(err.Error(), "refused") != 1 {
		t.Errorf("error says refused more than once: %v", err)
	}
	t.Logf("error: %v", err)
	if got := len(o.requests("/x.bin")); got != 1 {
		t.Errorf("GETs of /x.bin: got %d, want 1 (the direct fetch only)", got)
	}
}

// TestFetchInputLeaksNoResponseBytes: whatever a server answers — an error
// page, a banner that is not HTTP, a broken header — none of its bytes end
// up in the error, which becomes the job's fail message at the studio.
func TestFetchInputLeaksNoResponseBytes(t *testing.T) {
	const secret = "SECRET-7f3a"
	o := newOrigin(t)
	o.mux.HandleFunc("/denied.wav", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "internal admin page: "+secret, http.StatusForbidden)
	})
	raw := func(answer string) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				bufio.NewReader(c).ReadString('\n')
				c.Write([]byte(answer))
				c.Close()
			}
		}()
		return "http://" + l.Addr().String()
	}
	tests := []struct{ name, url string }{
		{"error page", o.URL + "/denied.wav"},
		{"not http", raw("SSH-2.0-OpenSSH_9.6 "+secret+"\r\n") + "/x.wav"},
		{"bad status line", raw("HTTP/1.1 2x0 "+secret+"\r\n\r\n") + "/x.wav"},
		{"bad header line", raw("HTTP/1.1 200 OK\r\n"+secret+"\r\n\r\n") + "/x.wav"},
		{"bad content length", raw("HTTP/1.1 200 OK\r\nContent-Length: "+secret+"\r\n\r\n") + "/x.wav"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t, testConfig(t))
			_, err := s.FetchInput(context.Background(), tt.url, InputAudio, t.TempDir())
			if err == nil {
				t.Fatal("FetchInput: got nil error, want a failure")
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "admin") {
				t.Errorf("error carries the server's bytes: %v", err)
			}
			t.Logf("error: %v", err)
		})
	}
}
