package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stokerhq/stoker/llamacpp-plugin/gguf"
	"github.com/stokerhq/stoker/plugins"
)

// recorder is a plugins.Events that keeps what a job reported. cancelAfter,
// when set, is called on the first progress event (to cancel mid-job).
type recorder struct {
	mu       sync.Mutex
	progress int
	steps    []string // "step/total unit" of each progress event
	logs     []string
	result   []byte
	onFirst  func()
	fired    bool
	// goneOn makes Progress fail for this unit, as when the host is gone.
	goneOn string
	texts  []string // streamed pieces of the answer
}

func (r *recorder) Text(piece string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.texts = append(r.texts, piece)
	return nil
}

func (r *recorder) Progress(step, total uint64, unit string) error {
	r.mu.Lock()
	r.progress++
	r.steps = append(r.steps, fmt.Sprintf("%d/%d %s", step, total, unit))
	f := r.onFirst
	fire := f != nil && !r.fired
	r.fired = r.fired || fire
	r.mu.Unlock()
	if fire {
		f()
	}
	if unit == r.goneOn {
		return errors.New("receiver gone")
	}
	return nil
}

func (r *recorder) Log(level, message string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.logs = append(r.logs, level+": "+message)
	return nil
}

func (r *recorder) Output(ext string, p []byte) error {
	return errors.New("llm jobs have no binary output")
}

func (r *recorder) Result(b []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.result != nil {
		return errors.New("result set twice")
	}
	r.result = append([]byte(nil), b...)
	return nil
}

// writeTiny writes the tiny model into dir and returns its path.
func writeTiny(t testing.TB, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "tiny-llama.gguf")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := gguf.WriteTinyLlama(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// llmRequest builds an llm job for model at path with greedy sampling.
func llmRequest(model, path string, msgs ...string) *plugins.RunRequest {
	task := &plugins.LLMTask{MaxTokens: 16, Temperature: 0}
	for _, m := range msgs {
		task.Messages = append(task.Messages, plugins.Message{Role: "user", Content: m})
	}
	return &plugins.RunRequest{
		JobID:  "job-1",
		Model:  model,
		Engine: engineID,
		Task:   plugins.Task{Kind: plugins.KindLLM, LLM: task},
		Files:  []plugins.ModelFile{{Role: "model", Path: path}},
	}
}

func wantKind(t *testing.T, err error, kind plugins.ErrorKind) {
	t.Helper()
	if err == nil {
		t.Fatalf("got nil error, want %s", kind)
	}
	var je *plugins.JobError
	if !errors.As(err, &je) {
		t.Fatalf("got %T %v, want a *plugins.JobError of kind %s", err, err, kind)
	}
	if je.Kind != kind {
		t.Fatalf("got kind %s (%v), want %s", je.Kind, err, kind)
	}
}

func TestDescribe(t *testing.T) {
	d, err := newEngine(nil).Describe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(d.Engines, ","); got != "llama-cpp" {
		t.Errorf("engines %q, want llama-cpp", got)
	}
	if len(d.Kinds) != 1 || d.Kinds[0] != plugins.KindLLM {
		t.Errorf("kinds %v, want [llm]", d.Kinds)
	}
	if got := d.Models[plugins.KindLLM]; len(got) != 1 || got[0] != "llama-cpp:*" {
		t.Errorf("models %v, want [llama-cpp:*]", got)
	}
	if d.ContractVersion != plugins.ContractVersion {
		t.Errorf("contract %d, want %d", d.ContractVersion, plugins.ContractVersion)
	}
	if d.Ready != llamaBuiltIn {
		t.Errorf("ready %v (%s), want %v", d.Ready, d.NotReadyReason, llamaBuiltIn)
	}
	if !d.Ready && !strings.Contains(d.NotReadyReason, "-tags llamacpp") {
		t.Errorf("not-ready reason %q does not say how to build", d.NotReadyReason)
	}
}

// TestRunRejectsBeforeLoading covers bad requests that fail before
// llama.cpp is involved, so they hold in every build.
func TestRunRejectsBeforeLoading(t *testing.T) {
	dir := t.TempDir()
	tiny := writeTiny(t, dir)
	notGGUF := filepath.Join(dir, "notes.gguf")
	if err := os.WriteFile(notGGUF, []byte("this is not a model\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.gguf")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		edit func(r *plugins.RunRequest)
		want plugins.ErrorKind
	}{
		{"image task", func(r *plugins.RunRequest) {
			r.Task = plugins.Task{Kind: plugins.KindImage, Image: &plugins.ImageTask{Prompt: "x"}}
		}, plugins.ErrUnsupported},
		{"other engine", func(r *plugins.RunRequest) { r.Engine = "sd-cpp" }, plugins.ErrUnsupported},
		{"empty messages", func(r *plugins.RunRequest) { r.Task.LLM.Messages = nil }, plugins.ErrBadInput},
		{"inexpressible schema", func(r *plugins.RunRequest) {
			r.Task.LLM.JSONSchema = []byte(`{"type":"string","pattern":"^[a-z]+$"}`)
		}, plugins.ErrBadInput},
		{"malformed schema", func(r *plugins.RunRequest) { r.Task.LLM.JSONSchema = []byte(`{"type":`) }, plugins.ErrBadInput},
		{"no model file", func(r *plugins.RunRequest) { r.Files = nil }, plugins.ErrBadInput},
		{"missing model file", func(r *plugins.RunRequest) { r.Files[0].Path = filepath.Join(dir, "gone.gguf") }, plugins.ErrEngine},
		{"not a gguf", func(r *plugins.RunRequest) { r.Files[0].Path = notGGUF }, plugins.ErrBadInput},
		{"empty file", func(r *plugins.RunRequest) { r.Files[0].Path = empty }, plugins.ErrBadInput},
	}
	e := newEngine(nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := llmRequest("tiny-llama", tiny, "hello")
			tt.edit(req)
			rec := &recorder{}
			wantKind(t, e.Run(context.Background(), req, rec), tt.want)
			if rec.result != nil {
				t.Errorf("a failed job reported a result: %s", rec.result)
			}
		})
	}
	if n := e.models.Loads(); n != 0 {
		t.Errorf("%d model loads for requests that should fail first, want 0", n)
	}
}

func TestSplitThink(t *testing.T) {
	tests := []struct {
		in, content, reasoning string
		found                  bool
	}{
		{"plain answer ", "plain answer", "", false},
		{"<think>why</think>\n\nbecause", "because", "why", true},
		{"  \n<think> a\nb </think>x", "x", "a\nb", true},
		{"<think>cut off mid", "", "cut off mid", true},
		{"opened in prompt</think> answer", "answer", "opened in prompt", true},
		{"answer mentions <think> later", "answer mentions <think> later", "", false},
		{"", "", "", false},
	}
	for _, tt := range tests {
		c, r, f := splitThink(tt.in)
		if c != tt.content || r != tt.reasoning || f != tt.found {
			t.Errorf("splitThink(%q) = %q, %q, %v; want %q, %q, %v", tt.in, c, r, f, tt.content, tt.reasoning, tt.found)
		}
	}
}

func TestFindStop(t *testing.T) {
	tests := []struct {
		out   string
		prev  int
		stops []string
		want  int
	}{
		{"hello world", 0, []string{"wor"}, 6},
		{"hello world", 8, []string{"wor"}, 6}, // match spans the last piece
		{"hello world", 11, []string{"wor"}, -1},
		{"abcabc", 0, []string{"c", "b"}, 1},
		{"abc", 0, nil, -1},
	}
	for _, tt := range tests {
		if got := findStop([]byte(tt.out), tt.prev, tt.stops); got != tt.want {
			t.Errorf("findStop(%q, %d, %q) = %d, want %d", tt.out, tt.prev, tt.stops, got, tt.want)
		}
	}
}

func TestClampMaxTokens(t *testing.T) {
	tests := []struct {
		max  uint32
		room int
		want int
	}{
		{0, 1000, 512}, {16, 1000, 16}, {4_000_000_000, 100, 100}, {5, 0, 1},
	}
	for _, tt := range tests {
		if got := clampMaxTokens(tt.max, tt.room); got != tt.want {
			t.Errorf("clampMaxTokens(%d, %d) = %d, want %d", tt.max, tt.room, got, tt.want)
		}
	}
}

func TestContextSize(t *testing.T) {
	tests := []struct {
		req   uint32
		train int
		want  int
	}{
		{0, 32768, 8192}, {0, 1024, 1024}, {2048, 4096, 2048}, {100000, 4096, 4096},
	}
	for _, tt := range tests {
		if got := contextSize(tt.req, tt.train); got != tt.want {
			t.Errorf("contextSize(%d, %d) = %d, want %d", tt.req, tt.train, got, tt.want)
		}
	}
}

func TestChatCompletionShape(t *testing.T) {
	body, err := chatCompletion("m1", []byte("<think>hmm</think> hi"), genResult{tokens: 7, finish: "length"}, 12, 34)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"object": "chat.completion",
		"model":  "m1",
		"choices": []any{map[string]any{
			"index":         0.0,
			"message":       map[string]any{"role": "assistant", "content": "hi", "reasoning_content": "hmm"},
			"finish_reason": "length",
		}},
		"usage":      map[string]any{"prompt_tokens": 12.0, "completion_tokens": 7.0, "total_tokens": 19.0},
		"elapsed_ms": 34.0,
	}
	gb, _ := json.Marshal(got)
	wb, _ := json.Marshal(want)
	if string(gb) != string(wb) {
		t.Errorf("got %s\nwant %s", gb, wb)
	}
	body, _ = chatCompletion("m1", []byte("plain"), genResult{tokens: 1, finish: "stop"}, 1, 1)
	if strings.Contains(string(body), "reasoning_content") {
		t.Errorf("reasoning_content present without a think block: %s", body)
	}
}
