package models

import (
	"context"
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
	b.Run("plain-io.Copy", func(b *testing.B) {
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
			n, err := io.Copy(out, resp.Body)
			resp.Body.Close()
			out.Close()
			if err != nil || n != size || resp.StatusCode != http.StatusOK {
				b.Fatalf("copy: %d bytes, status %d, %v", n, resp.StatusCode, err)
			}
			b.StopTimer()
			os.Remove(dst)
			b.StartTimer()
		}
	})
}
