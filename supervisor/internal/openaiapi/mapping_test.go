package openaiapi

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestChatMapping: OpenAI's chat request fields onto the spec's LlmParams.
func TestChatMapping(t *testing.T) {
	tests := []struct {
		name string
		body string
		want string // the task's JSON, or "error: <part of the message>"
	}{
		{"plain", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`,
			`{"kind":"llm","messages":[{"role":"user","content":"hi"}]}`},
		{"budget, sampling, stop string", `{"model":"m","messages":[{"role":"developer","content":"be brief"},{"role":"user","content":"hi"}],"max_tokens":16,"temperature":0,"top_p":0.9,"stop":"END"}`,
			`{"kind":"llm","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}],"maxTokens":16,"temperature":0,"topP":0.9,"stop":["END"]}`},
		{"max_completion_tokens wins", `{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":16,"max_completion_tokens":8,"stop":["a","b"]}`,
			`{"kind":"llm","messages":[{"role":"user","content":"hi"}],"maxTokens":8,"stop":["a","b"]}`},
		{"text parts", `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"one"},{"type":"text","text":"two"}]}]}`,
			`{"kind":"llm","messages":[{"role":"user","content":"one\ntwo"}]}`},
		{"json_object", `{"model":"m","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_object"}}`,
			`{"kind":"llm","messages":[{"role":"user","content":"hi"}],"jsonSchema":{"type":"object"}}`},
		{"json_schema", `{"model":"m","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"array"}}}}`,
			`{"kind":"llm","messages":[{"role":"user","content":"hi"}],"jsonSchema":{"type":"array"}}`},
		{"image part", `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}`, "error: text parts only"},
		{"n of 2", `{"model":"m","messages":[{"role":"user","content":"hi"}],"n":2}`, "error: n must be 1"},
		{"unknown response_format", `{"model":"m","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"xml"}}`, "error: not served"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var req chatRequest
			err := json.Unmarshal([]byte(tt.body), &req)
			if err == nil {
				var task any
				if task, err = req.llmTask(); err == nil {
					b, _ := json.Marshal(task)
					if string(b) != tt.want {
						t.Errorf("got %s, want %s", b, tt.want)
					}
					return
				}
			}
			if !strings.HasPrefix(tt.want, "error: ") || !strings.Contains(err.Error(), strings.TrimPrefix(tt.want, "error: ")) {
				t.Errorf("got error %v, want %s", err, tt.want)
			}
		})
	}
}

// TestImageMapping: size onto width and height; n must be 1.
func TestImageMapping(t *testing.T) {
	tests := []struct {
		size string
		want string
	}{
		{"", `{"kind":"image","prompt":"p","ext":"png"}`},
		{"auto", `{"kind":"image","prompt":"p","ext":"png"}`},
		{"512x256", `{"kind":"image","prompt":"p","width":512,"height":256,"ext":"png"}`},
		{"512", "error"},
		{"0x5", "error"},
		{"axb", "error"},
		{"99999999999x1", "error"},
	}
	for _, tt := range tests {
		req := imageRequest{Prompt: "p", Size: tt.size}
		task, err := req.imageTask()
		if tt.want == "error" {
			if err == nil {
				t.Errorf("size %q: no error", tt.size)
			}
			continue
		}
		b, _ := json.Marshal(task)
		if err != nil || string(b) != tt.want {
			t.Errorf("size %q: got %s %v, want %s", tt.size, b, err, tt.want)
		}
	}
	n := 3
	if _, err := (&imageRequest{Prompt: "p", N: &n}).imageTask(); err == nil {
		t.Error("n of 3: no error")
	}
}
