package models

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/gif"
	"image/jpeg"
	"image/png"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/image/bmp"
	"golang.org/x/image/tiff"
)

// testImages returns a small image in every format the store sniffs, keyed
// by the extension it must get.
func testImages(t testing.TB) map[string][]byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 8, 8))
	for i := range img.Pix {
		img.Pix[i] = byte(i * 7)
	}
	enc := map[string]func(*bytes.Buffer) error{
		"png":  func(b *bytes.Buffer) error { return png.Encode(b, img) },
		"jpg":  func(b *bytes.Buffer) error { return jpeg.Encode(b, img, nil) },
		"gif":  func(b *bytes.Buffer) error { return gif.Encode(b, img, nil) },
		"bmp":  func(b *bytes.Buffer) error { return bmp.Encode(b, img) },
		"tiff": func(b *bytes.Buffer) error { return tiff.Encode(b, img, nil) },
	}
	out := make(map[string][]byte)
	for ext, f := range enc {
		var b bytes.Buffer
		if err := f(&b); err != nil {
			t.Fatalf("encode %s: %v", ext, err)
		}
		out[ext] = b.Bytes()
	}
	// A lossless 1x1 WEBP (RIFF container, VP8L chunk).
	out["webp"] = []byte("RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00\x2f\x00\x00\x00\x10\x07\x10\x11\x11\x88\x88\xfe\x07\x00")
	return out
}

func TestFetchInputNamesImagesBySniffedType(t *testing.T) {
	o := newOrigin(t)
	s := openStore(t, testConfig(t))
	for ext, b := range testImages(t) {
		t.Run(ext, func(t *testing.T) {
			// The URL claims webp whatever the bytes are (spec I-23).
			o.serveBytes("/"+ext+"/latest.webp", b)
			dir := t.TempDir()
			got, err := s.FetchInput(context.Background(), o.URL+"/"+ext+"/latest.webp?sig=x", InputInitImage, dir)
			if err != nil {
				t.Fatalf("FetchInput: %v", err)
			}
			if want := filepath.Join(dir, "init-image."+ext); got != want {
				t.Errorf("path: got %s, want %s", got, want)
			}
			if c, _ := os.ReadFile(got); !bytes.Equal(c, b) {
				t.Errorf("content differs from the served bytes")
			}
			if files := dirFiles(t, dir); len(files) != 1 {
				t.Errorf("dir holds %q, want one file", files)
			}
		})
	}
}

func TestFetchInputKinds(t *testing.T) {
	o := newOrigin(t)
	pngBytes := testImages(t)["png"]
	wav := append([]byte("RIFF\x24\x00\x00\x00WAVEfmt "), make([]byte, 32)...)
	o.serveBytes("/img", pngBytes)
	o.serveBytes("/signed/clip-17.wav", wav)
	o.serveBytes("/", wav)
	s := openStore(t, testConfig(t))
	tests := []struct {
		kind InputKind
		path string
		want string
	}{
		{InputInitImage, "/img", "init-image.png"},
		{InputMask, "/img", "mask.png"},
		{InputRefImage, "/img", "ref-image.png"},
		{InputAudio, "/signed/clip-17.wav?X-Amz-Signature=abc", "audio-clip-17.wav"},
		{InputAudio, "/..%2Fweird%20name%3Brm%20-rf.wav", "audio-weird_name_rm_-rf.wav"},
		{InputAudio, "/", "audio-input"},
	}
	for _, tt := range tests {
		t.Run(tt.kind.String()+tt.path, func(t *testing.T) {
			dir := t.TempDir()
			got, err := s.FetchInput(context.Background(), o.URL+tt.path, tt.kind, dir)
			if err != nil {
				t.Fatalf("FetchInput: %v", err)
			}
			if want := filepath.Join(dir, tt.want); got != want {
				t.Errorf("path: got %s, want %s", got, want)
			}
		})
	}
}

func TestFetchInputRefusals(t *testing.T) {
	const limit = 12 << 20
	big := randomBytes(13<<20, 11)
	o := newOrigin(t)
	o.mux.HandleFunc("/claims-10gib", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.FormatInt(10<<30, 10))
		w.Write(make([]byte, 4096))
		w.(http.Flusher).Flush()
		<-r.Context().Done() // a client that read on would stall, not finish
	})
	o.mux.HandleFunc("/chunked-13mib", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		for off := 0; off < len(big); off += 1 << 20 {
			if _, err := w.Write(big[off : off+1<<20]); err != nil {
				return
			}
			w.(http.Flusher).Flush() // no Content-Length: chunked
		}
	})
	o.serveBytes("/page.webp", []byte("<!doctype html><title>signed url expired</title>"))
	o.mux.HandleFunc("/gone", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "expired", http.StatusForbidden) })

	tests := []struct {
		name    string
		url     string
		kind    InputKind
		wantIs  error
		refused bool
	}{
		{"10 GiB Content-Length against a 12 MiB limit", o.URL + "/claims-10gib", InputAudio, ErrTooLarge, true},
		{"13 MiB streamed without a length", o.URL + "/chunked-13mib", InputAudio, ErrTooLarge, true},
		{"not an image", o.URL + "/page.webp", InputInitImage, ErrRefused, true},
		{"status 403", o.URL + "/gone", InputMask, nil, false},
		{"ftp", "ftp://127.0.0.1/x.png", InputMask, ErrRefused, true},
		{"non-loopback http", "http://cdn.example/x.png", InputMask, ErrRefused, true},
		{"file without an allowed dir", "file:///etc/passwd", InputAudio, ErrRefused, true},
		{"unknown kind", o.URL + "/page.webp", InputKind(99), nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.InputLimit = limit
			s := openStore(t, cfg)
			dir := t.TempDir()
			_, err := s.FetchInput(context.Background(), tt.url, tt.kind, dir)
			if err == nil {
				t.Fatal("FetchInput: got nil error, want a failure")
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("FetchInput: got %v, want errors.Is %v", err, tt.wantIs)
			}
			if got := errors.Is(err, ErrRefused); got != tt.refused {
				t.Errorf("errors.Is(ErrRefused): got %v, want %v (%v)", got, tt.refused, err)
			}
			if files := dirFiles(t, dir); len(files) != 0 {
				t.Errorf("dir after failure: got %q, want nothing", files)
			}
			t.Logf("error: %v", err)
		})
	}
}

func TestFetchInputStalled(t *testing.T) {
	o := newOrigin(t)
	o.mux.HandleFunc("/slow.wav", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("RIFF"))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	cfg := testConfig(t)
	cfg.IdleTimeout = 100 * time.Millisecond
	s := openStore(t, cfg)
	dir := t.TempDir()
	_, err := s.FetchInput(context.Background(), o.URL+"/slow.wav", InputAudio, dir)
	if !errors.Is(err, ErrStalled) {
		t.Fatalf("FetchInput: got %v, want ErrStalled", err)
	}
	if files := dirFiles(t, dir); len(files) != 0 {
		t.Errorf("dir after failure: got %q, want nothing", files)
	}
}

func TestFetchInputFileURLs(t *testing.T) {
	allowed := t.TempDir()
	outside := t.TempDir()
	wav := []byte("RIFF\x04\x00\x00\x00WAVE")
	os.WriteFile(filepath.Join(allowed, "clip.wav"), wav, 0o644)
	os.WriteFile(filepath.Join(outside, "secret.wav"), wav, 0o644)
	os.WriteFile(filepath.Join(allowed, "big.wav"), make([]byte, 2048), 0o644)
	if err := os.Symlink(filepath.Join(outside, "secret.wav"), filepath.Join(allowed, "link.wav")); err != nil {
		t.Fatal(err)
	}
	local := t.TempDir() // the local API's uploads (LocalInputDir)
	os.WriteFile(filepath.Join(local, "upload.wav"), wav, 0o600)
	cfg := testConfig(t)
	cfg.AllowFileDir = allowed
	cfg.LocalInputDir = local
	cfg.InputLimit = 1024
	s := openStore(t, cfg)
	tests := []struct {
		name    string
		url     string
		wantErr error // nil: success
	}{
		{"inside", "file://" + filepath.Join(allowed, "clip.wav"), nil},
		{"localhost host", "file://localhost" + filepath.Join(allowed, "clip.wav"), nil},
		{"outside", "file://" + filepath.Join(outside, "secret.wav"), ErrRefused},
		{"dot-dot out", "file://" + allowed + "/../" + filepath.Base(outside) + "/secret.wav", ErrRefused},
		{"symlink out", "file://" + filepath.Join(allowed, "link.wav"), ErrRefused},
		{"other host", "file://evil.example" + filepath.Join(allowed, "clip.wav"), ErrRefused},
		{"a directory", "file://" + allowed, ErrRefused},
		{"over the limit", "file://" + filepath.Join(allowed, "big.wav"), ErrTooLarge},
		{"local input", "file://" + filepath.Join(local, "upload.wav"), nil},
		{"missing, outside: refused unlooked", "file:///nonexistent/clip.wav", ErrRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			got, err := s.FetchInput(context.Background(), tt.url, InputAudio, dir)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("FetchInput: %v", err)
				}
				if c, _ := os.ReadFile(got); !bytes.Equal(c, wav) {
					t.Errorf("content differs")
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("FetchInput: got %v, want %v", err, tt.wantErr)
			}
			if files := dirFiles(t, dir); len(files) != 0 {
				t.Errorf("dir after failure: got %q, want nothing", files)
			}
		})
	}
}
