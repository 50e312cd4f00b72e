// Package jobhttp is the HTTP plumbing that the local job routes share
// (the reference's image API in imageapi, the OpenAI-compatible routes in
// openaiapi): how a route is described to the agent, bounded JSON bodies,
// JSON answers with a write deadline, and the media type of a result.
//
// What the answers say, and in which error shape, stays with each API.
package jobhttp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Route is one route: its ServeMux pattern, its handler, and whether it
// runs jobs or changes the node's catalog (then it needs the token from
// every peer; see localapi.JobAccess).
type Route struct {
	Pattern string
	Handler http.HandlerFunc
	Job     bool
}

// WriteTimeout bounds writing a JSON answer or one streamed chunk. The
// local API lifts its server-wide write timeout for the job routes (an
// answer comes when the job is done), so a client that stops reading gives
// up its connection after this long instead of holding a goroutine.
const WriteTimeout = 30 * time.Second

// ResultWriteTimeout bounds writing a binary result.
const ResultWriteTimeout = 5 * time.Minute

// SetWriteDeadline bounds the next writes to w by d from now.
func SetWriteDeadline(w http.ResponseWriter, d time.Duration) {
	http.NewResponseController(w).SetWriteDeadline(time.Now().Add(d))
}

// DecodeJSON decodes a JSON body of at most max bytes into v, refusing
// trailing data, and unknown fields when strict.
func DecodeJSON(w http.ResponseWriter, r *http.Request, v any, max int64, strict bool) error {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return fmt.Errorf("body over %d bytes", max)
		}
		return fmt.Errorf("reading body: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("body is not the expected JSON: %w", err)
	}
	if dec.More() {
		return errors.New("body has data after the JSON value")
	}
	return nil
}

// WriteJSON answers status with v as JSON, within WriteTimeout, never
// cached and never sniffed.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encoding: "+err.Error(), http.StatusInternalServerError)
		return
	}
	SetWriteDeadline(w, WriteTimeout)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// MediaType is the content type of a result's extension ("png" or ".png");
// application/octet-stream for one it does not know.
func MediaType(ext string) string {
	switch strings.ToLower(strings.TrimPrefix(ext, ".")) {
	case "png":
		return "image/png"
	case "webp":
		return "image/webp"
	case "jpg", "jpeg":
		return "image/jpeg"
	case "gif":
		return "image/gif"
	case "wav":
		return "audio/wav"
	case "mp3":
		return "audio/mpeg"
	case "flac":
		return "audio/flac"
	case "ogg", "opus":
		return "audio/ogg"
	case "txt":
		return "text/plain; charset=utf-8"
	case "json":
		return "application/json"
	}
	return "application/octet-stream"
}
