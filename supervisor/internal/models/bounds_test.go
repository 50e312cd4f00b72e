package models

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
)

// TestFetchWithoutSizeIsBounded: a model file whose size nobody declares
// (no approxBytes, no Content-Length) is still bounded: by the store's size
// cap, and by the free disk space it must leave. Every failure leaves no
// .part behind.
func TestFetchWithoutSizeIsBounded(t *testing.T) {
	const cap = 1 << 20
	chunk := randomBytes(256<<10, 31)
	// 16 MiB without a length: far past the cap, bounded so that a store
	// without one finishes.
	endless := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		for range 64 {
			if _, err := w.Write(chunk); err != nil {
				return // the client went away
			}
			w.(http.Flusher).Flush() // no Content-Length: chunked
		}
	}
	o := newOrigin(t)
	o.mux.HandleFunc("/endless.gguf", endless)
	o.mux.HandleFunc("/claims-10gib.gguf", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.FormatInt(10<<30, 10))
		w.Write(chunk)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})

	tests := []struct {
		name   string
		path   string
		cfg    func(*Config)
		wantIs error
	}{
		{"body without a length over the size cap", "/endless.gguf", func(c *Config) { c.MaxFileBytes = cap }, ErrTooLarge},
		{"Content-Length over the size cap", "/claims-10gib.gguf", func(c *Config) { c.MaxFileBytes = cap }, ErrTooLarge},
		{"less free disk than the reserve", "/endless.gguf", func(c *Config) { c.MinFreeBytes = 1 << 62 }, ErrNoSpace},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			tt.cfg(&cfg)
			s := openStore(t, cfg)
			_, err := s.Fetch(context.Background(), "m", []File{{URL: o.URL + tt.path, Filename: "w.gguf"}})
			if !errors.Is(err, tt.wantIs) {
				t.Fatalf("Fetch: got %v, want %v", err, tt.wantIs)
			}
			if files := cacheFiles(t, s.Root()); len(files) != 0 {
				t.Errorf("cache after failure: got %q, want nothing", files)
			}
			t.Logf("error: %v", err)
		})
	}
}

// TestFetchStopsWhenTheDiskFillsUp: the free space is checked while the
// file is written, not only before: a download that would eat the reserve
// stops there and leaves no .part.
func TestFetchStopsWhenTheDiskFillsUp(t *testing.T) {
	data := randomBytes(8<<20, 32)
	o := newOrigin(t)
	o.mux.HandleFunc("/w.gguf", func(w http.ResponseWriter, r *http.Request) {
		for off := 0; off < len(data); off += 1 << 20 {
			if _, err := w.Write(data[off : off+1<<20]); err != nil {
				return
			}
			w.(http.Flusher).Flush() // no Content-Length, no approxBytes
		}
	})
	cfg := testConfig(t)
	cfg.MinFreeBytes = 100 << 20
	s := openStore(t, cfg)
	s.diskCheckEvery = 1 << 20
	var checks atomic.Int32
	s.freeBytes = func(string) (uint64, bool, error) {
		// Plenty before the request; then the disk fills up as fast as
		// the file grows.
		if checks.Add(1) <= 2 {
			return 1 << 40, true, nil
		}
		return 10 << 20, true, nil
	}
	_, err := s.Fetch(context.Background(), "m", []File{{URL: o.URL + "/w.gguf", Filename: "w.gguf"}})
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Fetch: got %v, want ErrNoSpace", err)
	}
	if files := cacheFiles(t, s.Root()); len(files) != 0 {
		t.Errorf("cache after failure: got %q, want nothing", files)
	}
	if n := checks.Load(); n < 3 {
		t.Errorf("free-space checks: got %d, want some while writing", n)
	}
}
