//go:build llamacpp && whispercpp && sdcpp

package agent_test

// The local API's routes on the real engines and the dev models, driven by
// OpenAI's own Node client library (the openai npm package, which
// scripts/openai-client.sh installs into a cache; scripts/test.sh runs it
// and passes the directory in OPENAI_CLIENT_NODE_MODULES).

import (
	"bytes"
	"encoding/json"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stokerhq/stoker/supervisor/internal/engines"
)

// openaiNodeModules is the node_modules directory holding the openai
// package: OPENAI_CLIENT_NODE_MODULES, else what scripts/openai-client.sh
// installs (quick when cached).
func openaiNodeModules(tb testing.TB) string {
	tb.Helper()
	if d := os.Getenv("OPENAI_CLIENT_NODE_MODULES"); d != "" {
		return d
	}
	out, err := exec.Command("bash", "../../../scripts/openai-client.sh").Output()
	if err != nil {
		tb.Fatalf("scripts/openai-client.sh (installs the openai npm package; needs npm and node): %v", err)
	}
	return strings.TrimSpace(string(out))
}

// localEngineStack is an engine stack with the local API on and the dev
// models in its local catalog, put there through POST /models.
func localEngineStack(tb testing.TB, plugins ...string) (*engineStack, *localClient) {
	tb.Helper()
	es := startEngineStack(tb, engineOptions{plugins: plugins, listen: "127.0.0.1:0"})
	c := newLocalClient(tb, es.stack)
	for _, id := range es.catalog.IDs() {
		e, _ := es.catalog.Get(id)
		m := map[string]any{"id": id, "engine": e.Source.Engine, "files": e.Source.Files, "cliDefaults": e.Source.CliDefaults}
		if code, _, body := c.postJSON(tb, "/models", m); code != http.StatusOK {
			tb.Fatalf("POST /models %s: %d %s", id, code, body)
		}
	}
	for _, p := range plugins {
		es.waitPlugin(tb, p, func(st engines.PluginStatus) bool { return st.State == engines.StateReady })
	}
	return es, c
}

// TestLocalAPIOnEngines: the reference's /image on tiny-sd (and its 400
// for a model that makes no images), then OpenAI's Node client against the
// OpenAI routes: chat on tiny-llama, streamed and not (the stream's pieces,
// one per token at most, join to the answer), images on tiny-sd (b64_json
// and a URL), transcription on tiny-whisper, speech on espeak, and
// OpenAI-shaped errors.
func TestLocalAPIOnEngines(t *testing.T) {
	nodeModules := openaiNodeModules(t)
	_, c := localEngineStack(t, "llamacpp-plugin", "whisper-plugin", "sdcpp-plugin", "espeak-tts-plugin")

	code, h, body := c.postJSON(t, "/image", map[string]any{"prompt": "a lighthouse at dusk", "model": "tiny-sd", "width": 64, "height": 64, "seed": 42})
	if code != http.StatusOK || !bytes.HasPrefix(body, []byte("RIFF")) || h.Get("Content-Type") != "image/webp" {
		t.Fatalf("POST /image on tiny-sd: %d %s %.64q", code, h.Get("Content-Type"), body)
	}
	if code, _, body := c.postJSON(t, "/image", map[string]any{"prompt": "x", "model": "tiny-llama"}); code != http.StatusBadRequest {
		t.Fatalf("POST /image with a language model: %d %s, want 400", code, body)
	}

	wav := filepath.Join(t.TempDir(), "clip.wav")
	samples := make([]float64, 2*16000)
	for i := range samples {
		samples[i] = 0.3 * math.Sin(2*math.Pi*440*float64(i)/16000)
	}
	if err := writeWAV16(wav, 16000, samples); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", "testdata/openai-client.cjs", nodeModules)
	cmd.Env = append(os.Environ(), "BASE_URL="+c.base+"/v1", "TOKEN="+c.token,
		"CHAT_MODEL=tiny-llama", "IMAGE_MODEL=tiny-sd", "STT_MODEL=tiny-whisper", "TTS_MODEL=espeak", "TTS_VOICE=en", "WAV="+wav)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node openai-client.cjs: %v\n%s", err, stderr.String())
	}
	var got struct {
		Models []string
		Chat   struct {
			ID, Object, Content, Finish string
			Usage                       struct{ Completion_tokens int }
		}
		Stream struct {
			Role, Finish string
			Pieces       []string
			Usage        *struct{ Completion_tokens int }
			FirstMs      float64
		}
		ImageB64 string
		ImageURL struct {
			URL, Type, Head string
			Status          int
		}
		Transcription struct {
			Text     *string
			Duration float64
		}
		Speech struct {
			Bytes      int
			Head, Type string
		}
		UnknownModel struct {
			Status     int
			Code, Type string
		}
		WrongKey struct{ Status int }
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("client output %s: %v", out, err)
	}
	t.Logf("openai client saw: %s", out)
	for _, want := range []string{"tiny-llama", "tiny-sd", "tiny-whisper", "espeak", "sd-turbo"} {
		if !strings.Contains(strings.Join(got.Models, ","), want) {
			t.Errorf("models.list lacks %s: %v", want, got.Models)
		}
	}
	if got.Chat.Object != "chat.completion" || !strings.HasPrefix(got.Chat.ID, "chatcmpl-local-") || got.Chat.Usage.Completion_tokens == 0 {
		t.Errorf("chat: %+v", got.Chat)
	}
	s := got.Stream
	joined := strings.TrimSpace(strings.Join(s.Pieces, ""))
	if s.Role != "assistant" || s.Finish != got.Chat.Finish || joined != got.Chat.Content {
		t.Errorf("stream: role %q finish %q joined %q; want assistant, %q, %q", s.Role, s.Finish, joined, got.Chat.Finish, got.Chat.Content)
	}
	if s.Usage == nil || s.Usage.Completion_tokens != got.Chat.Usage.Completion_tokens {
		t.Errorf("stream usage %+v, want %d completion tokens", s.Usage, got.Chat.Usage.Completion_tokens)
	}
	if n := got.Chat.Usage.Completion_tokens; len(s.Pieces) > n || n >= 4 && len(s.Pieces) < 2 {
		t.Errorf("%d pieces for %d tokens: not token by token", len(s.Pieces), n)
	}
	// The OpenAI route asks for PNG, which stable-diffusion.cpp's plugin
	// makes.
	const pngMagic = "89504e470d0a1a0a"
	if got.ImageB64 != pngMagic {
		t.Errorf("b64_json image starts %s, want PNG", got.ImageB64)
	}
	if got.ImageURL.Status != http.StatusOK || got.ImageURL.Type != "image/png" || got.ImageURL.Head != pngMagic {
		t.Errorf("url image: %+v", got.ImageURL)
	}
	if got.Transcription.Text == nil || math.Abs(got.Transcription.Duration-2) > 0.1 {
		t.Errorf("transcription: %+v, want a text and 2 s", got.Transcription)
	}
	if got.Speech.Head != "RIFF" || got.Speech.Bytes <= 44 || got.Speech.Type != "audio/wav" {
		t.Errorf("speech: %+v", got.Speech)
	}
	if got.UnknownModel.Status != http.StatusBadRequest || got.UnknownModel.Code != "model_not_found" || got.UnknownModel.Type != "invalid_request_error" {
		t.Errorf("unknown model: %+v", got.UnknownModel)
	}
	if got.WrongKey.Status != http.StatusUnauthorized {
		t.Errorf("wrong API key: %+v", got.WrongKey)
	}
}
