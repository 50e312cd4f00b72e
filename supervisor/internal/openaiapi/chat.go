package openaiapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/stokerhq/stoker/supervisor/internal/jobhttp"
	"github.com/stokerhq/stoker/supervisor/internal/localjobs"
	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

// chatRequest is what this node reads of a chat completion request; other
// fields are ignored.
type chatRequest struct {
	Model               string        `json:"model"`
	Messages            []chatMessage `json:"messages"`
	MaxTokens           *uint32       `json:"max_tokens"`
	MaxCompletionTokens *uint32       `json:"max_completion_tokens"`
	Temperature         *float32      `json:"temperature"`
	TopP                *float32      `json:"top_p"`
	Stop                stopList      `json:"stop"`
	N                   *int          `json:"n"`
	Stream              bool          `json:"stream"`
	StreamOptions       *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	ResponseFormat *struct {
		Type       string `json:"type"`
		JSONSchema *struct {
			Schema json.RawMessage `json:"schema"`
		} `json:"json_schema"`
	} `json:"response_format"`
	ReasoningEffort string `json:"reasoning_effort"`
}

// chatMessage is one message; its content is a string or an array of
// parts, of which only text parts are served.
type chatMessage struct {
	Role    string      `json:"role"`
	Content textContent `json:"content"`
}

// textContent is a message's text: a string, or the text parts of an
// array joined by newlines.
type textContent string

func (c *textContent) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*c = textContent(s)
		return nil
	}
	if string(b) == "null" {
		*c = ""
		return nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(b, &parts); err != nil {
		return errors.New("message content is neither a string nor an array of parts")
	}
	var texts []string
	for _, p := range parts {
		if p.Type != "text" {
			return fmt.Errorf("message content part of type %q: this node serves text parts only", p.Type)
		}
		texts = append(texts, p.Text)
	}
	*c = textContent(strings.Join(texts, "\n"))
	return nil
}

// stopList is "stop": a string or an array of strings.
type stopList []string

func (s *stopList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*s = stopList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("stop is neither a string nor an array of strings")
	}
	*s = many
	return nil
}

// llmTask maps the request onto the spec's LlmParams.
func (req *chatRequest) llmTask() (protocol.Task, error) {
	if req.N != nil && *req.N != 1 {
		return protocol.Task{}, errors.New("n must be 1: this node makes one choice per request")
	}
	p := &protocol.LlmParams{Temperature: req.Temperature, TopP: req.TopP, Stop: req.Stop, Reasoning: req.ReasoningEffort}
	for _, m := range req.Messages {
		role := m.Role
		if role == "developer" {
			role = "system" // OpenAI's newer name for it
		}
		p.Messages = append(p.Messages, protocol.Message{Role: role, Content: string(m.Content)})
	}
	switch {
	case req.MaxCompletionTokens != nil:
		p.MaxTokens = req.MaxCompletionTokens
	case req.MaxTokens != nil:
		p.MaxTokens = req.MaxTokens
	}
	if rf := req.ResponseFormat; rf != nil {
		switch rf.Type {
		case "", "text":
		case "json_object":
			p.JSONSchema = json.RawMessage(`{"type":"object"}`)
		case "json_schema":
			if rf.JSONSchema == nil || len(rf.JSONSchema.Schema) == 0 {
				return protocol.Task{}, errors.New("response_format json_schema without json_schema.schema")
			}
			p.JSONSchema = rf.JSONSchema.Schema
		default:
			return protocol.Task{}, fmt.Errorf("response_format type %q is not served", rf.Type)
		}
	}
	return protocol.Task{Kind: protocol.KindLLM, LLM: p}, nil
}

// completion is the part of the engine's chat.completion this package
// reads for a stream's last chunks.
type completion struct {
	Choices []struct {
		Message struct {
			Content string `json:"content"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage json.RawMessage `json:"usage"`
}

func (h *Handlers) chat(w http.ResponseWriter, r *http.Request) {
	var req chatRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if req.Model == "" {
		badRequest(w, "model is required")
		return
	}
	task, err := req.llmTask()
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	if req.Stream {
		h.chatStream(w, r, &req, task)
		return
	}
	res, err := h.jobs.Run(r.Context(), localjobs.Request{Model: req.Model, Task: task})
	if err != nil {
		writeJobError(w, err)
		return
	}
	// The engine's chat.completion, as the studio gets it, with the
	// fields OpenAI's clients expect and the studio's result leaves out.
	var body map[string]any
	if err := json.Unmarshal(res.JSON, &body); err != nil {
		writeError(w, http.StatusInternalServerError, "engine_error", "the engine's result is not a JSON object: "+err.Error())
		return
	}
	body["id"] = "chatcmpl-" + res.JobID
	body["object"] = "chat.completion"
	body["created"] = h.now().Unix()
	body["model"] = req.Model
	jobhttp.WriteJSON(w, http.StatusOK, body)
}

// chunk is one chat.completion.chunk of a stream.
type chunk struct {
	ID      string          `json:"id"`
	Object  string          `json:"object"`
	Created int64           `json:"created"`
	Model   string          `json:"model"`
	Choices []chunkChoice   `json:"choices"`
	Usage   json.RawMessage `json:"usage,omitempty"`
}

type chunkChoice struct {
	Index        int     `json:"index"`
	Delta        delta   `json:"delta"`
	FinishReason *string `json:"finish_reason"`
}

type delta struct {
	Role    string  `json:"role,omitempty"`
	Content *string `json:"content,omitempty"`
}

// sse writes a stream's events; it starts the response at the first one,
// so a request refused before any text comes answers an ordinary error.
type sse struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	started bool
	base    chunk
	pieces  int
}

func (s *sse) start() {
	if s.started {
		return
	}
	s.started = true
	h := s.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	s.w.WriteHeader(http.StatusOK)
}

// event writes one data: line and flushes it; an error means the client
// left.
func (s *sse) event(v any) error {
	s.start()
	var b []byte
	if raw, ok := v.(string); ok {
		b = []byte(raw)
	} else {
		var err error
		if b, err = json.Marshal(v); err != nil {
			return err
		}
	}
	buf := make([]byte, 0, len(b)+8)
	buf = append(buf, "data: "...)
	buf = append(buf, b...)
	buf = append(buf, '\n', '\n')
	s.rc.SetWriteDeadline(time.Now().Add(jobhttp.WriteTimeout))
	if _, err := s.w.Write(buf); err != nil {
		return err
	}
	return s.rc.Flush()
}

// text sends a piece of the answer, after the role chunk on the first.
func (s *sse) text(piece string) error {
	if s.pieces == 0 {
		c := s.base
		c.Choices = []chunkChoice{{Delta: delta{Role: "assistant", Content: ptr("")}}}
		if err := s.event(c); err != nil {
			return err
		}
	}
	s.pieces++
	c := s.base
	c.Choices = []chunkChoice{{Delta: delta{Content: &piece}}}
	return s.event(c)
}

func (h *Handlers) chatStream(w http.ResponseWriter, r *http.Request, req *chatRequest, task protocol.Task) {
	s := &sse{w: w, rc: http.NewResponseController(w),
		base: chunk{Object: "chat.completion.chunk", Created: h.now().Unix(), Model: req.Model}}
	// The first chunk goes out before the job's id is known.
	s.base.ID = "chatcmpl-" + randomHex(12)
	res, err := h.jobs.Run(r.Context(), localjobs.Request{Model: req.Model, Task: task, Text: s.text})
	if err != nil {
		if !s.started {
			writeJobError(w, err)
			return
		}
		// Mid-stream: OpenAI's clients read an error event.
		var je *localjobs.Error
		msg, code := err.Error(), "engine_error"
		if errors.As(err, &je) {
			code = string(je.Code)
		}
		s.event(map[string]apiError{"error": {Message: msg, Type: "server_error", Code: &code}})
		return
	}
	var c completion
	if err := json.Unmarshal(res.JSON, &c); err != nil || len(c.Choices) == 0 {
		if !s.started {
			writeError(w, http.StatusInternalServerError, "engine_error", "the engine's result is not a chat.completion")
		}
		return
	}
	if s.pieces == 0 && c.Choices[0].Message.Content != "" {
		// An engine that does not stream: the answer in one piece.
		if s.text(c.Choices[0].Message.Content) != nil {
			return
		}
	}
	finish := c.Choices[0].FinishReason
	last := s.base
	last.Choices = []chunkChoice{{Delta: delta{}, FinishReason: &finish}}
	if s.event(last) != nil {
		return
	}
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		u := s.base
		u.Choices, u.Usage = []chunkChoice{}, c.Usage
		if s.event(u) != nil {
			return
		}
	}
	s.event("[DONE]")
}
