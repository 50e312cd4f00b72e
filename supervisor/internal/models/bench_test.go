package models

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkFetch compares a store download (to .part, sha256 verified,
// fsynced, renamed) with a plain io.Copy of the same body into a file, from
// the same loopback server. Compare the MB/s of the two.
func BenchmarkFetch(b *testing.B) {
	const size = 64 << 20
	data := randomBytes(size, 42)
	o := newOrigin(b)
	o.serveBytes("/w.gguf", data)
	cfg := testConfig(b)
	s := openStore(b, cfg)
	f := File{URL: o.URL + "/w.gguf", Filename: "w.gguf", ApproxBytes: size, SHA256: sha(data)}

	b.Run("store-sha256", func(b *testing.B) {
		b.SetBytes(size)
		for i := 0; i < b.N; i++ {
			got, err := s.Fetch(context.Background(), "bench", []File{f})
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if err := s.removeFile(got[0].Path); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	})
	// The references: a plain copy, then with what the store adds to it.
	plain := func(name string, hashIt, syncIt bool) {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(size)
			dst := filepath.Join(s.Root(), "plain.bin")
			for i := 0; i < b.N; i++ {
				resp, err := cfg.HTTPClient.Get(f.URL)
				if err != nil {
					b.Fatal(err)
				}
				out, err := os.Create(dst)
				if err != nil {
					b.Fatal(err)
				}
				var w io.Writer = out
				h := sha256.New()
				if hashIt {
					w = io.MultiWriter(out, h)
				}
				n, err := io.Copy(w, resp.Body)
				resp.Body.Close()
				if err == nil && syncIt {
					err = out.Sync()
				}
				out.Close()
				if err != nil || n != size || resp.StatusCode != http.StatusOK {
					b.Fatalf("copy: %d bytes, status %d, %v", n, resp.StatusCode, err)
				}
				if hashIt && hex.EncodeToString(h.Sum(nil)) != f.SHA256 {
					b.Fatal("sha256 differs")
				}
				b.StopTimer()
				os.Remove(dst)
				b.StartTimer()
			}
		})
	}
	plain("plain-io.Copy", false, false)
	plain("io.Copy+sha256", true, false)
	plain("io.Copy+sha256+fsync", true, true)
}

// BenchmarkAcquirePresent is what every job pays for a model file already
// in the store: the checks, the shared lock, the access time, the eviction
// pass, the release.
func BenchmarkAcquirePresent(b *testing.B) {
	const size = 1 << 20
	data := randomBytes(size, 7)
	o := newOrigin(b)
	o.serveBytes("/m.gguf", data)
	cfg := testConfig(b)
	cfg.MaxBytes = 1 << 30
	s := openStore(b, cfg)
	f := File{URL: o.URL + "/m.gguf", Filename: "m.gguf", ApproxBytes: size, SHA256: sha(data)}
	if _, err := s.Fetch(context.Background(), "bench", []File{f}); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		_, lease, err := s.Acquire(context.Background(), "bench", []File{f})
		if err != nil {
			b.Fatal(err)
		}
		lease.Release()
	}
}
