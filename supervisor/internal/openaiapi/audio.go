package openaiapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/stokerhq/stoker/supervisor/internal/jobhttp"
	"github.com/stokerhq/stoker/supervisor/internal/localjobs"
	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

// multipartMemory is how much of a transcription upload is held in memory;
// the rest spills to a temporary file that net/http removes after the
// request.
const multipartMemory = 8 << 20

func (h *Handlers) transcribe(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, MaxAudioBytes+1<<20)
	if err := r.ParseMultipartForm(multipartMemory); err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			badRequest(w, fmt.Sprintf("upload over %d bytes", MaxAudioBytes))
			return
		}
		badRequest(w, "want a multipart/form-data body with the audio as field file: "+err.Error())
		return
	}
	f, _, err := r.FormFile("file")
	if err != nil {
		badRequest(w, "field file (the audio) is missing")
		return
	}
	defer f.Close()
	model := r.FormValue("model")
	if model == "" {
		badRequest(w, "model is required")
		return
	}
	format := r.FormValue("response_format")
	switch format {
	case "":
		format = "json"
	case "json", "text", "verbose_json":
	default:
		badRequest(w, fmt.Sprintf("response_format %.32q: want json, text or verbose_json", format))
		return
	}
	p := &protocol.AudioSttParams{Language: r.FormValue("language"), Prompt: r.FormValue("prompt")}
	for _, g := range append(r.MultipartForm.Value["timestamp_granularities[]"], r.MultipartForm.Value["timestamp_granularities"]...) {
		switch g {
		case "word":
			p.Timestamps = "word"
		case "segment":
			if p.Timestamps == "" {
				p.Timestamps = "segment"
			}
		default:
			badRequest(w, fmt.Sprintf("timestamp_granularities %.32q: want word or segment", g))
			return
		}
	}
	res, err := h.jobs.Run(r.Context(), localjobs.Request{Model: model, Task: protocol.Task{Kind: protocol.KindAudioSTT, STT: p}, Audio: f})
	if err != nil {
		writeJobError(w, err)
		return
	}
	var out struct {
		Text     string          `json:"text"`
		Language string          `json:"language"`
		Duration float64         `json:"duration"`
		Segments json.RawMessage `json:"segments"`
	}
	if err := json.Unmarshal(res.JSON, &out); err != nil {
		writeError(w, http.StatusInternalServerError, "engine_error", "the engine's result is not a transcription: "+err.Error())
		return
	}
	switch format {
	case "text":
		jobhttp.SetWriteDeadline(w, jobhttp.WriteTimeout)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, out.Text+"\n")
	case "verbose_json":
		body := map[string]any{"task": "transcribe", "language": out.Language, "duration": out.Duration, "text": out.Text}
		if len(out.Segments) > 0 {
			body["segments"] = out.Segments
		}
		jobhttp.WriteJSON(w, http.StatusOK, body)
	default:
		jobhttp.WriteJSON(w, http.StatusOK, map[string]string{"text": out.Text})
	}
}

// speechRequest is what this node reads of a speech request.
type speechRequest struct {
	Model          string   `json:"model"`
	Input          string   `json:"input"`
	Voice          string   `json:"voice"`
	ResponseFormat string   `json:"response_format"`
	Speed          *float32 `json:"speed"`
}

func (h *Handlers) speech(w http.ResponseWriter, r *http.Request) {
	var req speechRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if req.Model == "" || req.Input == "" {
		badRequest(w, "model and input are required")
		return
	}
	ext := req.ResponseFormat
	if ext == "" || ext == "pcm" {
		ext = "wav"
	}
	if !validExt(ext) {
		badRequest(w, fmt.Sprintf("response_format %.32q", req.ResponseFormat))
		return
	}
	p := &protocol.AudioTtsParams{Text: req.Input, Voice: req.Voice, Speed: req.Speed, Ext: ext}
	res, err := h.jobs.Run(r.Context(), localjobs.Request{Model: req.Model, Task: protocol.Task{Kind: protocol.KindAudioTTS, TTS: p}})
	if err != nil {
		writeJobError(w, err)
		return
	}
	defer res.Close()
	if res.File == nil {
		writeError(w, http.StatusInternalServerError, "engine_error", "the engine returned no audio")
		return
	}
	hd := w.Header()
	// The engine's format, which may not be the one asked for (the
	// engines here make WAV).
	hd.Set("Content-Type", jobhttp.MediaType(res.Ext))
	hd.Set("Content-Length", strconv.FormatInt(res.Size, 10))
	hd.Set("X-Job-Id", res.JobID)
	jobhttp.SetWriteDeadline(w, jobhttp.ResultWriteTimeout)
	w.WriteHeader(http.StatusOK)
	io.Copy(w, res.File)
}

// validExt is an extension the engine contract accepts: 1-8 lowercase
// letters or digits.
func validExt(s string) bool {
	return len(s) >= 1 && len(s) <= 8 && strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789") == ""
}
