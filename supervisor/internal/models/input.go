package models

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// InputKind is which task input a URL is (spec §6.2).
type InputKind int

const (
	InputInitImage InputKind = iota + 1 // initImageUrl
	InputMask                           // maskUrl
	InputRefImage                       // refImageUrl
	InputAudio                          // audio_stt inputUrl
)

func (k InputKind) String() string {
	switch k {
	case InputInitImage:
		return "init-image"
	case InputMask:
		return "mask"
	case InputRefImage:
		return "ref-image"
	case InputAudio:
		return "audio"
	}
	return fmt.Sprintf("InputKind(%d)", int(k))
}

func (k InputKind) isImage() bool {
	return k == InputInitImage || k == InputMask || k == InputRefImage
}

// FetchInput downloads one task input into dir (an existing directory the
// caller owns, such as the job's scratch directory) and returns its path.
//
// Images are named <kind>.<ext> by their sniffed content (JPEG, PNG, WEBP,
// GIF, BMP, TIFF), whatever the URL says (spec I-23); anything else is
// refused. Audio is named audio-<the URL's base name, sanitised>. The input
// may be at most Config.InputLimit bytes: a larger Content-Length is refused
// before the body is read, and a body that runs over is cut off. file:// URLs
// are served from Config.AllowFileDir only. It blocks for at most
// Config.InputTimeout and returns an *Error on failure, leaving nothing in
// dir.
func (s *Store) FetchInput(ctx context.Context, rawURL string, kind InputKind, dir string) (string, error) {
	p, err := s.fetchInput(ctx, rawURL, kind, dir)
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		err = fmt.Errorf("input not fetched within %s: %w", s.cfg.InputTimeout, err)
	}
	if err != nil {
		return "", &Error{Op: "input", URL: redactURL(rawURL), File: kind.String(), Err: err}
	}
	return p, nil
}

func (s *Store) fetchInput(ctx context.Context, rawURL string, kind InputKind, dir string) (string, error) {
	if !kind.isImage() && kind != InputAudio {
		return "", fmt.Errorf("unknown input kind %d", int(kind))
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.InputTimeout)
	defer cancel()

	var (
		src  io.ReadCloser
		name string
	)
	if u, err := url.Parse(rawURL); err == nil && strings.EqualFold(u.Scheme, "file") {
		src, err = s.openFileInput(u)
		if err != nil {
			return "", err
		}
		name = u.Path
	} else {
		u, err := s.policy.parse(rawURL)
		if err != nil {
			return "", err
		}
		resp, err := s.get(ctx, rawURL, 0)
		if err != nil {
			return "", err
		}
		if resp.status != http.StatusOK {
			defer resp.body.Close()
			return "", resp.statusError()
		}
		if resp.length > s.cfg.InputLimit {
			resp.body.Close()
			return "", fmt.Errorf("%w: content-length %d over the limit of %d bytes", ErrTooLarge, resp.length, s.cfg.InputLimit)
		}
		src = resp.body
		name = u.Path
	}
	defer src.Close()
	return s.saveInput(src, kind, name, dir)
}

// insideAny reports whether path is inside one of dirs.
func insideAny(dirs []string, path string) bool {
	for _, dir := range dirs {
		if rel, err := filepath.Rel(dir, path); err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return true
		}
	}
	return false
}

// openFileInput opens a file:// input, which must resolve (symlinks
// followed) to a regular file inside Config.AllowFileDir or
// Config.LocalInputDir and fit the limit.
func (s *Store) openFileInput(u *url.URL) (io.ReadCloser, error) {
	if s.cfg.AllowFileDir == "" && s.cfg.LocalInputDir == "" {
		return nil, refusedf("file:// inputs are not allowed")
	}
	if u.Host != "" && !strings.EqualFold(u.Host, "localhost") {
		return nil, refusedf("file:// url names host %q", u.Host)
	}
	if u.Path == "" || !filepath.IsAbs(u.Path) {
		return nil, refusedf("file:// url has no absolute path")
	}
	// The allowed directories, as configured and resolved.
	var dirs []string
	for _, dir := range []string{s.cfg.AllowFileDir, s.cfg.LocalInputDir} {
		if dir == "" {
			continue
		}
		dirs = append(dirs, filepath.Clean(dir))
		if r, err := filepath.EvalSymlinks(dir); err == nil {
			dirs = append(dirs, r)
		}
	}
	// A path outside them is refused before it is looked at, so that
	// whether it exists is never told.
	path := filepath.Clean(u.Path)
	if !insideAny(dirs, path) {
		return nil, refusedf("file %s is outside the allowed directory", u.Path)
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, err
	}
	if !insideAny(dirs, real) {
		return nil, refusedf("file %s is outside the allowed directory", u.Path)
	}
	f, err := os.Open(real)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, refusedf("file %s is not a regular file", u.Path)
	}
	if fi.Size() > s.cfg.InputLimit {
		f.Close()
		return nil, fmt.Errorf("%w: %d bytes over the limit of %d bytes", ErrTooLarge, fi.Size(), s.cfg.InputLimit)
	}
	return f, nil
}

// saveInput streams src into dir under a temporary name, enforces the size
// limit, names the result and renames it into place.
func (s *Store) saveInput(src io.Reader, kind InputKind, urlPath, dir string) (_ string, err error) {
	tmp, err := os.CreateTemp(dir, ".input-*"+partSuffix)
	if err != nil {
		return "", err
	}
	defer func() {
		tmp.Close()
		if err != nil {
			os.Remove(tmp.Name())
		}
	}()
	head := &headWriter{max: 16}
	n, err := io.CopyBuffer(io.MultiWriter(tmp, head), io.LimitReader(src, s.cfg.InputLimit+1), make([]byte, 256<<10))
	if err != nil {
		return "", err
	}
	if n > s.cfg.InputLimit {
		return "", fmt.Errorf("%w: body over the limit of %d bytes", ErrTooLarge, s.cfg.InputLimit)
	}
	var name string
	if kind.isImage() {
		ext := sniffImage(head.buf)
		if ext == "" {
			return "", refusedf("content is not a JPEG, PNG, WEBP, GIF, BMP or TIFF image")
		}
		name = kind.String() + "." + ext
	} else {
		name = audioName(urlPath)
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	dst := filepath.Join(dir, name)
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return "", err
	}
	return dst, nil
}

// audioName keeps the URL's base name where it is safe: bytes outside
// [A-Za-z0-9._-] become '_', and a name that still fails CheckFilename
// becomes "audio-input".
func audioName(urlPath string) string {
	base := path.Base(urlPath)
	if base == "." || base == "/" {
		return "audio-input"
	}
	if len(base) > maxNameLen-len("audio-") {
		base = base[len(base)-(maxNameLen-len("audio-")):]
	}
	safe, err := SanitizeModelID(base)
	if err != nil {
		return "audio-input"
	}
	name := "audio-" + safe
	if CheckFilename(name) != nil {
		return "audio-input"
	}
	return name
}

// headWriter keeps the first max bytes written to it.
type headWriter struct {
	buf []byte
	max int
}

func (w *headWriter) Write(p []byte) (int, error) {
	if room := w.max - len(w.buf); room > 0 {
		w.buf = append(w.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// sniffImage returns the file extension for the image format whose magic
// bytes head starts with, or "".
func sniffImage(head []byte) string {
	switch {
	case bytes.HasPrefix(head, []byte{0xFF, 0xD8, 0xFF}):
		return "jpg"
	case bytes.HasPrefix(head, []byte("\x89PNG\r\n\x1a\n")):
		return "png"
	case len(head) >= 12 && bytes.Equal(head[:4], []byte("RIFF")) && bytes.Equal(head[8:12], []byte("WEBP")):
		return "webp"
	case bytes.HasPrefix(head, []byte("GIF87a")) || bytes.HasPrefix(head, []byte("GIF89a")):
		return "gif"
	case bytes.HasPrefix(head, []byte("BM")) && len(head) >= 14:
		return "bmp"
	case bytes.HasPrefix(head, []byte("II*\x00")) || bytes.HasPrefix(head, []byte("MM\x00*")):
		return "tiff"
	}
	return ""
}
