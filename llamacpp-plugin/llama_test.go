//go:build llamacpp

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"
	"github.com/stokerhq/stoker/llamacpp-plugin/gbnf"
	"github.com/stokerhq/stoker/llamacpp-plugin/gguf"
	"github.com/stokerhq/stoker/plugins"
)

// These tests need llama.cpp (the llamacpp build tag). They fail, never
// skip, when the library or its reference program is unusable.

const tinyChatPrompt = "<|im_start|>user\nHello there<|im_end|>\n<|im_start|>assistant\n"

func testEngine(t testing.TB) *engine {
	t.Helper()
	e := newEngine(hclog.New(&hclog.LoggerOptions{Name: "llamacpp-test", Level: hclog.Warn, Output: os.Stderr}))
	// One thread: the CI machines are small and shared, and llama.cpp's
	// thread barriers suffer badly when threads outnumber free cores.
	e.threads = 1
	t.Cleanup(e.Close)
	return e
}

// completionOf decodes a job's result.
func completionOf(t testing.TB, rec *recorder) completion {
	t.Helper()
	if rec.result == nil {
		t.Fatal("job reported no result")
	}
	var c completion
	dec := json.NewDecoder(bytes.NewReader(rec.result))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("result %s: %v", rec.result, err)
	}
	if c.Object != "chat.completion" || len(c.Choices) != 1 || c.Choices[0].Message.Role != "assistant" {
		t.Fatalf("result %s is not a chat.completion with one assistant choice", rec.result)
	}
	if c.Usage.TotalTokens != c.Usage.PromptTokens+c.Usage.CompletionTokens {
		t.Errorf("usage %+v does not add up", c.Usage)
	}
	return c
}

func runJob(t testing.TB, e *engine, req *plugins.RunRequest) completion {
	t.Helper()
	rec := &recorder{}
	if err := e.Run(context.Background(), req, rec); err != nil {
		t.Fatalf("Run: %v", err)
	}
	return completionOf(t, rec)
}

// llamaSimple finds llama.cpp's llama-simple built from the same source:
// $LLAMA_SIMPLE, else <prefix of pkg-config llama>/bin/llama-simple.
func llamaSimple(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("LLAMA_SIMPLE"); p != "" {
		return p
	}
	out, err := exec.Command("pkg-config", "--variable=prefix", "llama").Output()
	if err != nil {
		t.Fatalf("pkg-config llama: %v (run scripts/install-engines.sh and source scripts/engines/env.sh, or set LLAMA_SIMPLE)", err)
	}
	p := filepath.Join(strings.TrimSpace(string(out)), "bin", "llama-simple")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("llama-simple: %v (set LLAMA_SIMPLE for a system llama.cpp)", err)
	}
	return p
}

// generateRaw runs the plugin's generation on a rendered prompt with greedy
// sampling and returns the prompt's and the generated tokens' text as
// llama-simple prints them (special tokens rendered).
func generateRaw(t testing.TB, e *engine, path, prompt string, n int) (promptText, genText string, tokens []int32) {
	t.Helper()
	m, err := loadModel(context.Background(), path, e.gpuLayers, e.log)
	if err != nil {
		t.Fatalf("loadModel: %v", err)
	}
	defer m.free()
	toks, err := m.tokenize(prompt)
	if err != nil {
		t.Fatal(err)
	}
	// llama-simple prints each piece with printf("%s"), so a piece stops at
	// its first NUL byte (the <0x00> token prints nothing); render alike.
	printed := func(tok int32) []byte {
		p := m.piece(tok, true)
		if i := bytes.IndexByte(p, 0); i >= 0 {
			p = p[:i]
		}
		return p
	}
	var pb, gb bytes.Buffer
	for _, tok := range toks {
		pb.Write(printed(tok))
	}
	p := genParams{prompt: toks, maxTokens: n, nCtx: contextSize(0, m.nCtxTrain()), threads: e.threads}
	_, err = m.generate(context.Background(), p, func(tok int32, _ []byte) error {
		tokens = append(tokens, tok)
		gb.Write(printed(tok))
		return nil
	})
	if err != nil {
		t.Fatalf("generate: %v", err)
	}
	return pb.String(), gb.String(), tokens
}

func TestParityWithLlamaSimple(t *testing.T) {
	bin := llamaSimple(t)
	path := writeTiny(t, t.TempDir())
	e := testEngine(t)
	total := 0
	for _, prompt := range []string{tinyChatPrompt, "Hello my name is", "The quick brown fox"} {
		const n = 48
		promptText, genText, tokens := generateRaw(t, e, path, prompt, n)
		if len(tokens) == 0 {
			t.Fatalf("prompt %q: plugin generated no tokens", prompt)
		}
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(bin, "-m", path, "-n", "48", prompt)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("llama-simple: %v\n%s", err, stderr.String())
		}
		want := stdout.String()
		got := promptText + genText + "\n"
		if got != want {
			t.Errorf("prompt %q:\nplugin       %q\nllama-simple %q", prompt, got, want)
		}
		if got == want {
			t.Logf("prompt %q: %d tokens generated, identical", prompt, len(tokens))
		}
		total += len(tokens)
	}
	if total < 24 {
		t.Errorf("only %d tokens compared; pick prompts that generate more", total)
	}

	// Run, through the chat template, generates the same tokens.
	_, genText, tokens := generateRaw(t, e, path, tinyChatPrompt, 16)
	req := llmRequest("tiny-llama", path, "Hello there")
	req.Task.LLM.MaxTokens = 16
	c := runJob(t, e, req)
	if c.Usage.CompletionTokens != len(tokens) {
		t.Errorf("Run generated %d tokens, raw generation %d", c.Usage.CompletionTokens, len(tokens))
	}
	// Control tokens are not part of the content, and content is trimmed.
	var plain bytes.Buffer
	m, _ := loadModel(context.Background(), path, e.gpuLayers, e.log)
	for _, tok := range tokens {
		plain.Write(m.piece(tok, false))
	}
	m.free()
	if want := jsonRoundTrip(strings.TrimSpace(plain.String())); c.Choices[0].Message.Content != want {
		t.Errorf("Run content %q, want %q (raw with specials %q)", c.Choices[0].Message.Content, want, genText)
	}
}

// jsonRoundTrip is s as it survives JSON encoding (invalid UTF-8 replaced).
func jsonRoundTrip(s string) string {
	b, _ := json.Marshal(s)
	var out string
	_ = json.Unmarshal(b, &out)
	return out
}

func TestResidency(t *testing.T) {
	dir := t.TempDir()
	path := writeTiny(t, dir)
	e := testEngine(t)
	first := runJob(t, e, llmRequest("tiny-llama", path, "one"))
	second := runJob(t, e, llmRequest("tiny-llama", path, "one"))
	if n := e.models.Loads(); n != 1 {
		t.Fatalf("%d loads after two jobs on one model, want 1", n)
	}
	if first.Choices[0].Message.Content != second.Choices[0].Message.Content {
		t.Errorf("greedy output changed between jobs: %q then %q", first.Choices[0].Message.Content, second.Choices[0].Message.Content)
	}
	res, _ := e.Resident(context.Background())
	if len(res) != 1 || res[0].Model != "tiny-llama" || res[0].Bytes == 0 {
		t.Fatalf("resident %+v, want tiny-llama with its size", res)
	}

	// A second model file is a second resident model.
	other := filepath.Join(dir, "other.gguf")
	copyFile(t, path, other)
	runJob(t, e, llmRequest("tiny-llama-2", other, "two"))
	if n := e.models.Loads(); n != 2 {
		t.Fatalf("%d loads, want 2", n)
	}
	if res, _ := e.Resident(context.Background()); len(res) != 2 || res[0].Model != "tiny-llama-2" {
		t.Fatalf("resident %+v, want tiny-llama-2 then tiny-llama", res)
	}

	// Unload frees it; the next job loads again. Unloading twice is fine.
	for range 2 {
		if err := e.Unload(context.Background(), "tiny-llama"); err != nil {
			t.Fatal(err)
		}
	}
	if res, _ := e.Resident(context.Background()); len(res) != 1 || res[0].Model != "tiny-llama-2" {
		t.Fatalf("resident after Unload %+v, want only tiny-llama-2", res)
	}
	runJob(t, e, llmRequest("tiny-llama", path, "three"))
	if n := e.models.Loads(); n != 3 {
		t.Fatalf("%d loads after Unload and a job, want 3", n)
	}

	// A budget that holds one model evicts the least recently used.
	e.models.SetBudget(res[0].Bytes + 1)
	runJob(t, e, llmRequest("tiny-llama-2", other, "four")) // resident: no load
	runJob(t, e, llmRequest("tiny-llama", path, "five"))    // resident: no load
	third := filepath.Join(dir, "third.gguf")
	copyFile(t, path, third)
	runJob(t, e, llmRequest("tiny-llama-3", third, "six"))
	res, _ = e.Resident(context.Background())
	if len(res) != 1 || res[0].Model != "tiny-llama-3" {
		t.Fatalf("resident under a one-model budget %+v, want only tiny-llama-3", res)
	}
	if n := e.models.Loads(); n != 4 {
		t.Fatalf("%d loads, want 4", n)
	}
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeGGUF writes f to dir/name.
func writeGGUF(t testing.TB, dir, name string, f *gguf.File) string {
	t.Helper()
	var b bytes.Buffer
	if err := f.Write(&b); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBadInputServesNext(t *testing.T) {
	dir := t.TempDir()
	good := writeTiny(t, dir)
	tinyBytes, _ := os.ReadFile(good)

	truncated := filepath.Join(dir, "truncated.gguf")
	if err := os.WriteFile(truncated, tinyBytes[:len(tinyBytes)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	setArch := func(arch string) *gguf.File {
		f := gguf.TinyLlama()
		for i := range f.KV {
			if f.KV[i].Key == "general.architecture" {
				f.KV[i].Value = arch
			}
		}
		return f
	}
	unknownArch := writeGGUF(t, dir, "unknown-arch.gguf", setArch("stoker-unknown"))
	clip := writeGGUF(t, dir, "mmproj.gguf", setArch("clip"))
	missing := gguf.TinyLlama()
	missing.Tensors = missing.Tensors[:len(missing.Tensors)-2] // no output_norm/output
	missingTensor := writeGGUF(t, dir, "missing-tensor.gguf", missing)

	tests := []struct {
		name string
		req  func() *plugins.RunRequest
		want plugins.ErrorKind
		msg  string
	}{
		{"truncated gguf", func() *plugins.RunRequest { return llmRequest("bad", truncated, "hi") }, plugins.ErrBadInput, "cannot load"},
		{"unknown architecture", func() *plugins.RunRequest { return llmRequest("bad", unknownArch, "hi") }, plugins.ErrBadInput, "stoker-unknown"},
		{"vision projector", func() *plugins.RunRequest { return llmRequest("bad", clip, "hi") }, plugins.ErrBadInput, `"clip"`},
		{"missing tensor", func() *plugins.RunRequest { return llmRequest("bad", missingTensor, "hi") }, plugins.ErrBadInput, "cannot load"},
		{"empty messages", func() *plugins.RunRequest {
			r := llmRequest("tiny-llama", good)
			return r
		}, plugins.ErrBadInput, "no messages"},
		{"prompt beyond context", func() *plugins.RunRequest {
			r := llmRequest("tiny-llama", good, strings.Repeat("long ", 200))
			r.Defaults.ContextSize = 64
			return r
		}, plugins.ErrBadInput, "does not fit"},
		{"inexpressible schema", func() *plugins.RunRequest {
			r := llmRequest("tiny-llama", good, "hi")
			r.Task.LLM.JSONSchema = []byte(`{"type":"object","properties":{"a":{"allOf":[]}}}`)
			return r
		}, plugins.ErrBadInput, "allOf"},
	}
	e := testEngine(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			err := e.Run(context.Background(), tt.req(), rec)
			wantKind(t, err, tt.want)
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not mention %q", err, tt.msg)
			}
			// The engine serves the next job.
			c := runJob(t, e, llmRequest("tiny-llama", good, "still there?"))
			if c.Usage.CompletionTokens == 0 && c.Choices[0].FinishReason != "stop" {
				t.Errorf("next job generated nothing: %+v", c)
			}
		})
	}
	if res, _ := e.Resident(context.Background()); len(res) != 1 || res[0].Model != "tiny-llama" {
		t.Errorf("resident %+v, want only tiny-llama (failed loads hold nothing)", res)
	}
}

func TestAbsurdMaxTokensClamped(t *testing.T) {
	path := writeTiny(t, t.TempDir())
	e := testEngine(t)
	req := llmRequest("tiny-llama", path, "hi")
	req.Task.LLM.MaxTokens = 4_000_000_000
	req.Defaults.ContextSize = 64
	c := runJob(t, e, req)
	if c.Usage.TotalTokens > 64 {
		t.Errorf("usage %+v exceeds the 64-token context", c.Usage)
	}
	if c.Choices[0].FinishReason == "length" && c.Usage.TotalTokens != 64 {
		t.Errorf("finish length at %d tokens, want the context (64) filled", c.Usage.TotalTokens)
	}
}

func TestFinishReasonLength(t *testing.T) {
	path := writeTiny(t, t.TempDir())
	e := testEngine(t)
	req := llmRequest("tiny-llama", path, "hi")
	req.Task.LLM.MaxTokens = 3
	_, _, tokens := generateRaw(t, e, path, tinyChatPrompt, 3)
	c := runJob(t, e, req)
	want := "length"
	if len(tokens) < 3 {
		want = "stop"
	}
	if c.Choices[0].FinishReason != want || c.Usage.CompletionTokens != len(tokens) {
		t.Errorf("finish %q after %d tokens, want %q after %d", c.Choices[0].FinishReason, c.Usage.CompletionTokens, want, len(tokens))
	}
}

func TestStopString(t *testing.T) {
	path := writeTiny(t, t.TempDir())
	e := testEngine(t)
	// Find the raw text the model writes, then stop on one of its pieces.
	m, err := loadModel(context.Background(), path, e.gpuLayers, e.log)
	if err != nil {
		t.Fatal(err)
	}
	toks, _ := m.tokenize(tinyChatPrompt)
	var raw []byte
	var pieces [][]byte
	_, err = m.generate(context.Background(), genParams{prompt: toks, maxTokens: 16, nCtx: 1024, threads: e.threads}, func(_ int32, p []byte) error {
		raw = append(raw, p...)
		pieces = append(pieces, p)
		return nil
	})
	m.free()
	if err != nil {
		t.Fatal(err)
	}
	stop, at := "", -1
	for k, off := 0, 0; k < len(pieces); off, k = off+len(pieces[k]), k+1 {
		p := string(pieces[k])
		if k >= 2 && p != "" && utf8.ValidString(p) && strings.Index(string(raw), p) == off {
			stop, at = p, off
			break
		}
	}
	if at < 0 {
		t.Fatalf("no usable stop piece in %q", raw)
	}
	req := llmRequest("tiny-llama", path, "Hello there")
	req.Task.LLM.Stop = []string{"", stop}
	c := runJob(t, e, req)
	want := jsonRoundTrip(strings.TrimSpace(string(raw[:at])))
	if got := c.Choices[0].Message.Content; got != want || c.Choices[0].FinishReason != "stop" {
		t.Errorf("with stop %q: content %q finish %q, want %q finish stop", stop, got, c.Choices[0].FinishReason, want)
	}
}

func TestSamplingSeed(t *testing.T) {
	path := writeTiny(t, t.TempDir())
	e := testEngine(t)
	job := func(seed uint64) string {
		req := llmRequest("tiny-llama", path, "Hello there")
		req.Task.LLM.Temperature = 1.5
		topP := float32(0.95)
		req.Task.LLM.TopP = &topP
		req.Task.LLM.Seed = &seed
		req.Task.LLM.MaxTokens = 32
		return runJob(t, e, req).Choices[0].Message.Content
	}
	a, b, c := job(7), job(7), job(8)
	if a != b {
		t.Errorf("same seed, different output: %q vs %q", a, b)
	}
	if a == c {
		t.Errorf("seeds 7 and 8 gave the same 32-token output %q", a)
	}
}

func TestJSONSchemaEnforced(t *testing.T) {
	path := writeTiny(t, t.TempDir())
	e := testEngine(t)
	tests := []struct {
		name   string
		schema string
		check  func(t *testing.T, v any)
	}{
		{"enum", `{"enum":["red","green","blue"]}`, func(t *testing.T, v any) {
			if s, _ := v.(string); s != "red" && s != "green" && s != "blue" {
				t.Errorf("got %v, want one of red, green, blue", v)
			}
		}},
		{"object", `{"type":"object","properties":{"ok":{"type":"boolean"},"n":{"type":"integer"},"tag":{"type":"string","maxLength":4}},"required":["ok","n"],"additionalProperties":false}`,
			func(t *testing.T, v any) {
				m, _ := v.(map[string]any)
				if _, ok := m["ok"].(bool); !ok {
					t.Errorf("got %v, want a boolean ok", v)
				}
				if n, ok := m["n"].(float64); !ok || n != float64(int64(n)) {
					t.Errorf("got %v, want an integer n", v)
				}
				for k := range m {
					if k != "ok" && k != "n" && k != "tag" {
						t.Errorf("unexpected key %q in %v", k, v)
					}
				}
				if s, ok := m["tag"].(string); ok && len([]rune(s)) > 4 {
					t.Errorf("tag %q longer than 4", s)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for seed := uint64(1); seed <= 3; seed++ {
				req := llmRequest("tiny-llama", path, "Answer in JSON")
				req.Task.LLM.JSONSchema = []byte(tt.schema)
				req.Task.LLM.MaxTokens = 400
				req.Task.LLM.Temperature = 0.8
				req.Task.LLM.Seed = &seed
				c := runJob(t, e, req)
				if c.Choices[0].FinishReason != "stop" {
					t.Fatalf("finish %q after %d tokens, want stop (grammar complete)", c.Choices[0].FinishReason, c.Usage.CompletionTokens)
				}
				var v any
				if err := json.Unmarshal([]byte(c.Choices[0].Message.Content), &v); err != nil {
					t.Fatalf("content %q is not JSON: %v", c.Choices[0].Message.Content, err)
				}
				tt.check(t, v)
			}
		})
	}
}

func TestCancellation(t *testing.T) {
	path := writeTiny(t, t.TempDir())
	e := testEngine(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req := longRequest(path)
	rec := &recorder{onFirst: cancel}
	err := e.Run(ctx, req, rec)
	wantKind(t, err, plugins.ErrCancelled)
	if rec.result != nil {
		t.Errorf("cancelled job reported a result: %s", rec.result)
	}
	if rec.progress > 2 {
		t.Errorf("%d progress events after cancelling on the first, want decoding to stop at once", rec.progress)
	}
	runJob(t, e, llmRequest("tiny-llama", path, "after cancel"))

	// A job cancelled before it starts fails the same way and loads nothing new.
	ctx2, cancel2 := context.WithCancel(context.Background())
	cancel2()
	wantKind(t, e.Run(ctx2, llmRequest("tiny-llama", path, "x"), &recorder{}), plugins.ErrCancelled)
}

func TestSystemPrompt(t *testing.T) {
	path := writeTiny(t, t.TempDir())
	e := testEngine(t)
	m, err := loadModel(context.Background(), path, e.gpuLayers, e.log)
	if err != nil {
		t.Fatal(err)
	}
	defer m.free()
	got, err := m.applyTemplate([]plugins.Message{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Hi"}})
	if err != nil {
		t.Fatal(err)
	}
	want := "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
	if got != want {
		t.Errorf("template rendered %q, want %q", got, want)
	}
	req := llmRequest("tiny-llama", path, "Hi")
	req.Task.LLM.System = "Be brief."
	c := runJob(t, e, req)
	toks, _ := m.tokenize(want)
	if c.Usage.PromptTokens != len(toks) {
		t.Errorf("prompt_tokens %d, want %d (system prepended)", c.Usage.PromptTokens, len(toks))
	}
}

func TestLongPromptProgress(t *testing.T) {
	path := writeTiny(t, t.TempDir())
	e := testEngine(t)
	req := llmRequest("tiny-llama", path, strings.Repeat("long ", 150)) // ~780 byte tokens
	req.Task.LLM.MaxTokens = 4
	req.Defaults.ContextSize = 1024
	rec := &recorder{}
	if err := e.Run(context.Background(), req, rec); err != nil {
		t.Fatal(err)
	}
	c := completionOf(t, rec)
	n := c.Usage.PromptTokens
	want := []string{fmt.Sprintf("512/%d prompt_token", n), fmt.Sprintf("%d/%d prompt_token", n, n)}
	if len(rec.steps) < 3 || rec.steps[0] != want[0] || rec.steps[1] != want[1] {
		t.Fatalf("progress %q, want %q then token progress", rec.steps, want)
	}
	if last := rec.steps[len(rec.steps)-1]; last != fmt.Sprintf("%d/4 token", c.Usage.CompletionTokens) {
		t.Errorf("last progress %q, want %d/4 token", last, c.Usage.CompletionTokens)
	}
}

// TestGrammarsParseInLlamaCpp feeds grammars of every construct the gbnf
// package emits to llama.cpp's own grammar parser.
func TestGrammarsParseInLlamaCpp(t *testing.T) {
	path := writeTiny(t, t.TempDir())
	m, err := loadModel(context.Background(), path, -1, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer m.free()
	schemas := []string{
		`true`,
		`{"type":"object"}`,
		`{"type":"object","additionalProperties":false}`,
		`{"type":"object","properties":{"b":{"type":"string","minLength":1,"maxLength":3},"a":{"type":"integer"},"c":{"type":["boolean","null"]}},"required":["a"]}`,
		`{"type":"object","properties":{"x":{"type":"number"},"y":{"const":"a\"b\\c\n"}}}`,
		`{"type":"array","items":{"enum":["red",1,null,{"k":[1]}]},"minItems":1,"maxItems":3}`,
		`{"type":"array","items":{"type":"string"},"minItems":2}`,
		`{"type":"array","maxItems":0}`,
		`{"type":"array","prefixItems":[{"type":"string"},{"type":"integer"}],"items":false}`,
		`{"anyOf":[{"type":"string"},{"type":"array","items":{"$ref":"#"}}]}`,
		`{"$defs":{"n":{"type":"object","properties":{"v":{"type":"integer"},"next":{"oneOf":[{"$ref":"#/$defs/n"},{"type":"null"}]}},"required":["v","next"]}},"$ref":"#/$defs/n"}`,
	}
	for _, s := range schemas {
		g, err := gbnf.FromJSONSchema([]byte(s))
		if err != nil {
			t.Errorf("schema %s: %v", s, err)
			continue
		}
		if err := m.checkGrammar(g); err != nil {
			t.Errorf("schema %s: %v\n%s", s, err, g)
		}
	}
}

// TestUnloadDuringJob unloads a model while a job uses it: the job finishes,
// then the model is gone and the next job loads it again.
func TestUnloadDuringJob(t *testing.T) {
	path := writeTiny(t, t.TempDir())
	e := testEngine(t)
	req := llmRequest("tiny-llama", path, "Hello there")
	req.Task.LLM.MaxTokens = 32
	var during []plugins.ResidentModel
	rec := &recorder{onFirst: func() {
		if err := e.Unload(context.Background(), "tiny-llama"); err != nil {
			t.Error(err)
		}
		during, _ = e.Resident(context.Background())
	}}
	if err := e.Run(context.Background(), req, rec); err != nil {
		t.Fatalf("job whose model was unloaded mid-run: %v", err)
	}
	completionOf(t, rec)
	if len(during) != 0 {
		t.Errorf("Resident right after Unload = %+v, want none", during)
	}
	runJob(t, e, llmRequest("tiny-llama", path, "again"))
	if n := e.models.Loads(); n != 2 {
		t.Errorf("%d loads, want 2 (the unloaded model loads again)", n)
	}
}

// longRequest is a job that cannot end early: its grammar wants an array of
// at least 500 integers (over 1000 tokens), more than its 900-token budget,
// so the model cannot emit its end token and generation runs the budget out.
func longRequest(path string) *plugins.RunRequest {
	req := llmRequest("tiny-llama", path, "Count")
	req.Task.LLM.MaxTokens = 900
	req.Task.LLM.JSONSchema = []byte(`{"type":"array","items":{"type":"integer"},"minItems":500}`)
	return req
}

func TestLongRequestRunsItsBudget(t *testing.T) {
	path := writeTiny(t, t.TempDir())
	c := runJob(t, testEngine(t), longRequest(path))
	if c.Usage.CompletionTokens != 900 || c.Choices[0].FinishReason != "length" {
		t.Errorf("long request: %d tokens, finish %q; want 900, length", c.Usage.CompletionTokens, c.Choices[0].FinishReason)
	}
}

// TestHostGoneStopsGeneration: when progress can no longer be delivered the
// job stops generating and fails instead of running its budget out.
func TestHostGoneStopsGeneration(t *testing.T) {
	path := writeTiny(t, t.TempDir())
	e := testEngine(t)
	for _, unit := range []string{"prompt_token", "token"} {
		rec := &recorder{goneOn: unit}
		err := e.Run(context.Background(), longRequest(path), rec)
		if err == nil || rec.result != nil {
			t.Errorf("progress failing on %s: err %v, result %s; want an error and no result", unit, err, rec.result)
		}
		if n := len(rec.steps); unit == "token" && n > 50 {
			t.Errorf("%d progress events after the first failed, want generation to stop", n)
		}
	}
	runJob(t, e, llmRequest("tiny-llama", path, "next"))
}

// TestStreamText: asked for the text as it is generated, the engine sends
// it in pieces, one per generated token at most, that join to the answer's
// text before trimming, and the result is the one an unstreamed job gives.
func TestStreamText(t *testing.T) {
	path := writeTiny(t, t.TempDir())
	e := testEngine(t)
	plain := &recorder{}
	if err := e.Run(context.Background(), llmRequest("tiny-llama", path, "Hello there"), plain); err != nil {
		t.Fatal(err)
	}
	req := llmRequest("tiny-llama", path, "Hello there")
	req.StreamText = true
	rec := &recorder{}
	if err := e.Run(context.Background(), req, rec); err != nil {
		t.Fatal(err)
	}
	if len(plain.texts) != 0 {
		t.Errorf("unasked: %d pieces streamed", len(plain.texts))
	}
	c, want := completionOf(t, rec), completionOf(t, plain)
	c.ElapsedMs, want.ElapsedMs = nil, nil
	if fmt.Sprint(c) != fmt.Sprint(want) {
		t.Errorf("streamed job's result %+v, want the unstreamed one's %+v", c, want)
	}
	joined := strings.Join(rec.texts, "")
	if strings.TrimSpace(joined) != c.Choices[0].Message.Content {
		t.Errorf("pieces join to %q, want %q (trimmed)", joined, c.Choices[0].Message.Content)
	}
	if len(rec.texts) == 0 || len(rec.texts) > c.Usage.CompletionTokens {
		t.Errorf("%d pieces for %d tokens", len(rec.texts), c.Usage.CompletionTokens)
	}
}
