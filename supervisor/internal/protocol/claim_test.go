package protocol

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// claimJSON returns a valid image claim with edit applied to its decoded map,
// so each case states only what it breaks.
func claimJSON(t *testing.T, edit func(m map[string]any)) []byte {
	t.Helper()
	m := map[string]any{
		"jobId": "job-1", "gameId": "g", "assetName": "g/a", "model": "m", "vramGbEstimate": 1,
		"task": map[string]any{"kind": "image", "prompt": "a fox"},
		"modelSource": map[string]any{
			"engine":      "sd-cpp",
			"files":       []any{map[string]any{"role": "model", "url": "https://x/m.gguf", "filename": "m.gguf"}},
			"cliDefaults": map[string]any{"cfgScale": 1, "steps": 8, "width": 512, "height": 512},
		},
	}
	if edit != nil {
		edit(m)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sub(m map[string]any, key string) map[string]any { return m[key].(map[string]any) }

func TestClaimValidate(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(m map[string]any)
		wantErr string // substring naming the field; "" for valid
		is      error
	}{
		{name: "valid"},
		{name: "no files is fine", edit: func(m map[string]any) { sub(m, "modelSource")["files"] = []any{} }},
		{name: "absent files is fine", edit: func(m map[string]any) { delete(sub(m, "modelSource"), "files") }},
		{name: "missing task", edit: func(m map[string]any) { delete(m, "task") }, wantErr: "missing task"},
		{name: "null task", edit: func(m map[string]any) { m["task"] = nil }, wantErr: "missing task"},
		{name: "missing modelSource", edit: func(m map[string]any) { delete(m, "modelSource") }, wantErr: "missing modelSource"},
		{name: "missing gameId", edit: func(m map[string]any) { delete(m, "gameId") }, wantErr: "missing gameId"},
		{name: "missing assetName", edit: func(m map[string]any) { delete(m, "assetName") }, wantErr: "missing assetName"},
		{name: "missing model", edit: func(m map[string]any) { m["model"] = "" }, wantErr: "missing model"},
		{name: "task without kind", edit: func(m map[string]any) { delete(sub(m, "task"), "kind") }, wantErr: "missing kind"},
		{name: "unknown kind", edit: func(m map[string]any) { sub(m, "task")["kind"] = "hologram" }, wantErr: "hologram", is: ErrUnknownTaskKind},
		{name: "image without prompt", edit: func(m map[string]any) { delete(sub(m, "task"), "prompt") }, wantErr: "image: missing prompt"},
		{name: "image wrong width type", edit: func(m map[string]any) { sub(m, "task")["width"] = "wide" }, wantErr: "width"},
		{name: "image negative steps", edit: func(m map[string]any) { sub(m, "task")["steps"] = -1 }, wantErr: "steps"},
		{name: "llm without messages", edit: func(m map[string]any) { m["task"] = map[string]any{"kind": "llm"} }, wantErr: "llm: missing messages"},
		{name: "llm message without role", edit: func(m map[string]any) {
			m["task"] = map[string]any{"kind": "llm", "messages": []any{map[string]any{"content": "hi"}}}
		}, wantErr: "messages[0]: missing role"},
		{name: "llm kwargs not object", edit: func(m map[string]any) {
			m["task"] = map[string]any{"kind": "llm", "messages": []any{}, "chatTemplateKwargs": []any{1}}
		}, wantErr: "chatTemplateKwargs"},
		{name: "stt without inputUrl", edit: func(m map[string]any) { m["task"] = map[string]any{"kind": "audio_stt", "language": "en"} }, wantErr: "audio_stt: missing inputUrl"},
		{name: "tts without text", edit: func(m map[string]any) { m["task"] = map[string]any{"kind": "audio_tts", "voice": "v"} }, wantErr: "audio_tts: missing text"},
		{name: "video without prompt", edit: func(m map[string]any) { m["task"] = map[string]any{"kind": "video", "seconds": 3} }, wantErr: "video: missing prompt"},
		{name: "missing engine", edit: func(m map[string]any) { delete(sub(m, "modelSource"), "engine") }, wantErr: "missing engine"},
		{name: "missing cliDefaults", edit: func(m map[string]any) { delete(sub(m, "modelSource"), "cliDefaults") }, wantErr: "missing cliDefaults"},
		{name: "cliDefaults missing steps", edit: func(m map[string]any) { delete(sub(sub(m, "modelSource"), "cliDefaults"), "steps") }, wantErr: "missing steps"},
		{name: "cliDefaults null cfgScale", edit: func(m map[string]any) { sub(sub(m, "modelSource"), "cliDefaults")["cfgScale"] = nil }, wantErr: "missing cfgScale"},
		{name: "cliDefaults missing all", edit: func(m map[string]any) { sub(m, "modelSource")["cliDefaults"] = map[string]any{} },
			wantErr: "missing cfgScale, steps, width, height"},
		{name: "file without role", edit: func(m map[string]any) {
			sub(m, "modelSource")["files"] = []any{map[string]any{"url": "https://x/m", "filename": "m"}}
		}, wantErr: "files[0]: missing role"},
		{name: "file without url", edit: func(m map[string]any) {
			sub(m, "modelSource")["files"] = []any{map[string]any{"role": "vae", "filename": "m"}}
		}, wantErr: "files[0]: missing url"},
		{name: "file without filename", edit: func(m map[string]any) {
			sub(m, "modelSource")["files"] = []any{map[string]any{"role": "vae", "url": "https://x/m"}}
		}, wantErr: "files[0]: missing filename"},
		{name: "hostile filename", edit: func(m map[string]any) {
			sub(m, "modelSource")["files"] = []any{map[string]any{"role": "vae", "url": "https://x/m", "filename": "../../etc/passwd"}}
		}, wantErr: "not a plain file name"},
		{name: "backslash filename", edit: func(m map[string]any) {
			sub(m, "modelSource")["files"] = []any{map[string]any{"role": "vae", "url": "https://x/m", "filename": `..\x.dll`}}
		}, wantErr: "not a plain file name"},
		{name: "files not an array", edit: func(m map[string]any) { sub(m, "modelSource")["files"] = "m.gguf" }, wantErr: "files"},
		// What the reference worker accepts (serde: a String field must be
		// present, and may be empty) is accepted; absent or null is not.
		{name: "empty gameId is fine", edit: func(m map[string]any) { m["gameId"] = "" }},
		{name: "empty assetName is fine", edit: func(m map[string]any) { m["assetName"] = "" }},
		{name: "null gameId", edit: func(m map[string]any) { m["gameId"] = nil }, wantErr: "missing gameId"},
		{name: "empty image prompt is fine", edit: func(m map[string]any) { sub(m, "task")["prompt"] = "" }},
		{name: "null image prompt", edit: func(m map[string]any) { sub(m, "task")["prompt"] = nil }, wantErr: "image: missing prompt"},
		{name: "empty video prompt is fine", edit: func(m map[string]any) { m["task"] = map[string]any{"kind": "video", "prompt": ""} }},
		{name: "empty tts text is fine", edit: func(m map[string]any) { m["task"] = map[string]any{"kind": "audio_tts", "text": ""} }},
		{name: "empty llm role and content are fine", edit: func(m map[string]any) {
			m["task"] = map[string]any{"kind": "llm", "messages": []any{map[string]any{"role": "", "content": ""}}}
		}},
		{name: "llm message with null role", edit: func(m map[string]any) {
			m["task"] = map[string]any{"kind": "llm", "messages": []any{map[string]any{"role": nil, "content": "hi"}}}
		}, wantErr: "messages[0]: missing role"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := claimJSON(t, tt.edit)
			// Decode as an offer frame: it must succeed, whatever is wrong.
			f, err := Decode([]byte(`{"type":"offer","claim":` + string(raw) + `}`))
			if err != nil {
				t.Fatalf("Decode: got %v, want an offer (the claim has a jobId)", err)
			}
			claim := f.(Offer).Claim
			if claim.JobID != "job-1" {
				t.Errorf("JobID: got %q, want job-1", claim.JobID)
			}
			err = claim.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Validate: got %v, want nil", err)
			case tt.wantErr != "" && err == nil:
				t.Errorf("Validate: got nil, want an error naming %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Errorf("Validate: got %q, want it to name %q", err, tt.wantErr)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("Validate: got %v, want errors.Is %v", err, tt.is)
			}
		})
	}
}

func TestPlainFileName(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"model.gguf", true}, {"a-b_c.1.safetensors", true}, {"", false}, {".", false}, {"..", false},
		{"../x", false}, {"a/b", false}, {`a\b`, false}, {"/etc/passwd", false}, {"C:x", false}, {"a\x00b", false},
		{"..hidden", false},
	}
	for _, tt := range tests {
		if got := IsPlainFileName(tt.name); got != tt.want {
			t.Errorf("IsPlainFileName(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestTaskDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   Task
		want Task
		ext  string
	}{
		{"image", Task{Kind: KindImage, Image: &ImageParams{Prompt: "p"}},
			Task{Kind: KindImage, Image: &ImageParams{Prompt: "p", Width: ptr[uint32](512), Height: ptr[uint32](512), Steps: ptr[uint32](20), Ext: "webp"}}, "webp"},
		{"image keeps values", Task{Kind: KindImage, Image: &ImageParams{Prompt: "p", Width: ptr[uint32](0), Steps: ptr[uint32](8), Ext: "png"}},
			Task{Kind: KindImage, Image: &ImageParams{Prompt: "p", Width: ptr[uint32](0), Height: ptr[uint32](512), Steps: ptr[uint32](8), Ext: "png"}}, "png"},
		{"llm", Task{Kind: KindLLM, LLM: &LlmParams{Messages: []Message{}}},
			Task{Kind: KindLLM, LLM: &LlmParams{Messages: []Message{}, MaxTokens: ptr[uint32](512), Temperature: ptr[float32](0.7)}}, ""},
		{"llm greedy kept", Task{Kind: KindLLM, LLM: &LlmParams{Temperature: ptr[float32](0)}},
			Task{Kind: KindLLM, LLM: &LlmParams{MaxTokens: ptr[uint32](512), Temperature: ptr[float32](0)}}, ""},
		{"stt", Task{Kind: KindAudioSTT, STT: &AudioSttParams{InputURL: "u"}}, Task{Kind: KindAudioSTT, STT: &AudioSttParams{InputURL: "u"}}, ""},
		{"tts", Task{Kind: KindAudioTTS, TTS: &AudioTtsParams{Text: "t"}},
			Task{Kind: KindAudioTTS, TTS: &AudioTtsParams{Text: "t", Voice: "default", Ext: "wav"}}, "wav"},
		{"video", Task{Kind: KindVideo, Video: &VideoParams{Prompt: "p"}},
			Task{Kind: KindVideo, Video: &VideoParams{Prompt: "p", Seconds: ptr[float32](2), Width: ptr[uint32](512), Height: ptr[uint32](512), Ext: "mp4"}}, "mp4"},
		{"unknown kind", Task{Kind: "hologram"}, Task{Kind: "hologram"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := json.Marshal(tt.in)
			got := tt.in.WithDefaults()
			if !reflect.DeepEqual(got, tt.want) {
				g, _ := json.Marshal(got)
				w, _ := json.Marshal(tt.want)
				t.Errorf("got %s, want %s", g, w)
			}
			if after, _ := json.Marshal(tt.in); string(after) != string(before) {
				t.Errorf("WithDefaults changed its receiver: %s -> %s", before, after)
			}
			if got := tt.in.Ext(); got != tt.ext {
				t.Errorf("Ext: got %q, want %q", got, tt.ext)
			}
		})
	}
}

func TestTaskPrompt(t *testing.T) {
	long := strings.Repeat("word ", 100) // 500 chars: never truncated (I-3)
	tests := []struct {
		name string
		task Task
		want string
	}{
		{"image", Task{Kind: KindImage, Image: &ImageParams{Prompt: long}}, long},
		{"llm last message", Task{Kind: KindLLM, LLM: &LlmParams{Messages: []Message{{Role: "system", Content: "s"}, {Role: "user", Content: long}}}}, long},
		{"llm no messages", Task{Kind: KindLLM, LLM: &LlmParams{}}, ""},
		{"stt", Task{Kind: KindAudioSTT, STT: &AudioSttParams{InputURL: "https://x/a.wav", Prompt: "bias"}}, "https://x/a.wav"},
		{"tts", Task{Kind: KindAudioTTS, TTS: &AudioTtsParams{Text: "hello"}}, "hello"},
		{"video", Task{Kind: KindVideo, Video: &VideoParams{Prompt: "boat"}}, "boat"},
		{"none", Task{Kind: "x"}, ""},
	}
	for _, tt := range tests {
		if got := tt.task.Prompt(); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestTaskValidateMismatch(t *testing.T) {
	tests := []struct {
		name string
		task Task
	}{
		{"kind without params", Task{Kind: KindImage}},
		{"params of another kind", Task{Kind: KindImage, Video: &VideoParams{Prompt: "p"}}},
		{"two param sets", Task{Kind: KindImage, Image: &ImageParams{Prompt: "p"}, Video: &VideoParams{Prompt: "p"}}},
		{"empty", Task{}},
	}
	for _, tt := range tests {
		if err := tt.task.Validate(); err == nil {
			t.Errorf("%s: got nil, want an error", tt.name)
		}
	}
}

func TestTaskJSONRoundTrip(t *testing.T) {
	in := `{"kind":"image","prompt":"p","width":0,"extra":"ignored"}`
	var task Task
	if err := json.Unmarshal([]byte(in), &task); err != nil {
		t.Fatal(err)
	}
	if task.Image == nil || task.Image.Width == nil || *task.Image.Width != 0 {
		t.Fatalf("got %+v, want width present and 0 (absent ≠ 0)", task.Image)
	}
	out, err := json.Marshal(task)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(out), `{"kind":"image","prompt":"p","width":0}`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	unknown, _ := json.Marshal(Task{Kind: "hologram"})
	if got, want := string(unknown), `{"kind":"hologram"}`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}
