package agent_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"image/gif"
	"image/png"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/image/webp"

	"github.com/stokerhq/stoker/supervisor/internal/devstudio"
	"github.com/stokerhq/stoker/supervisor/internal/localapi"
	"github.com/stokerhq/stoker/supervisor/internal/protocol"
	"github.com/stokerhq/stoker/supervisor/internal/registration"
	"github.com/stokerhq/stoker/synthetic-plugin/synthetic"
)

// TestEveryKindEndToEnd sends a job of every kind through the whole
// pipeline — dev studio, WebSocket session, job runner, engine host, a real
// synthetic plugin process, upload or completeJson — and checks what the
// studio stored is real: images and audio decode, JSON has the spec's
// shapes, the prompt is the full prompt.
func TestEveryKindEndToEnd(t *testing.T) {
	s := startStack(t, stackOptions{})

	t.Run("image png", func(t *testing.T) {
		v := s.submit(t, "synthetic-image", map[string]any{"kind": "image", "prompt": "a moss golem at dawn", "width": 96, "height": 64, "ext": "png"})
		mustComplete(t, v)
		img, err := png.Decode(bytes.NewReader(s.result(t, v)))
		if err != nil {
			t.Fatalf("result is not a PNG: %v", err)
		}
		if b := img.Bounds(); b.Dx() != 96 || b.Dy() != 64 {
			t.Errorf("image %v, want 96x64", b)
		}
		if v.Prompt != "a moss golem at dawn" || v.ResultExt != "png" {
			t.Errorf("prompt %q ext %q", v.Prompt, v.ResultExt)
		}
	})
	t.Run("image webp by default", func(t *testing.T) {
		v := s.submit(t, "synthetic-image", map[string]any{"kind": "image", "prompt": "a paper lantern", "width": 33, "height": 17})
		mustComplete(t, v)
		img, err := webp.Decode(bytes.NewReader(s.result(t, v)))
		if err != nil {
			t.Fatalf("result is not a WebP: %v", err)
		}
		if b := img.Bounds(); b.Dx() != 33 || b.Dy() != 17 || v.ResultExt != "webp" {
			t.Errorf("image %v ext %q, want 33x17 webp", b, v.ResultExt)
		}
	})
	t.Run("llm", func(t *testing.T) {
		long := strings.Repeat("a very long prompt ", 40) // past the 200-char preview
		v := s.submit(t, "synthetic-llm", map[string]any{"kind": "llm", "messages": []map[string]string{
			{"role": "system", "content": "be brief"}, {"role": "user", "content": long},
		}, "maxTokens": 16})
		mustComplete(t, v)
		var res struct {
			Object  string `json:"object"`
			Model   string `json:"model"`
			Choices []struct {
				Index   int `json:"index"`
				Message struct {
					Role    string `json:"role"`
					Content string `json:"content"`
				} `json:"message"`
				FinishReason string `json:"finish_reason"`
			} `json:"choices"`
			Usage struct {
				Prompt     int `json:"prompt_tokens"`
				Completion int `json:"completion_tokens"`
				Total      int `json:"total_tokens"`
			} `json:"usage"`
		}
		if err := json.Unmarshal(v.Result, &res); err != nil {
			t.Fatal(err)
		}
		if res.Object != "chat.completion" || len(res.Choices) != 1 || res.Choices[0].Message.Role != "assistant" ||
			res.Choices[0].Message.Content == "" || res.Usage.Total != res.Usage.Prompt+res.Usage.Completion ||
			res.Usage.Completion > 16 {
			t.Errorf("result %s does not have the chat.completion shape", v.Result)
		}
		if r := res.Choices[0].FinishReason; r != "stop" && r != "length" {
			t.Errorf("finish_reason %q", r)
		}
		if v.Prompt != long {
			t.Errorf("prompt sent back is %d chars, want the full %d", len(v.Prompt), len(long))
		}
	})
	var wav []byte
	t.Run("tts", func(t *testing.T) {
		v := s.submit(t, "synthetic-tts", map[string]any{"kind": "audio_tts", "text": "Welcome back, traveller."})
		mustComplete(t, v)
		wav = s.result(t, v)
		checkWAV(t, wav)
		if v.ResultExt != "wav" {
			t.Errorf("ext %q", v.ResultExt)
		}
	})
	t.Run("video", func(t *testing.T) {
		v := s.submit(t, "synthetic-video", map[string]any{"kind": "video", "prompt": "a paper boat drifting", "seconds": 1, "fps": 4, "width": 48, "height": 32})
		mustComplete(t, v)
		g, err := gif.DecodeAll(bytes.NewReader(s.result(t, v)))
		if err != nil {
			t.Fatalf("result is not an animated GIF: %v", err)
		}
		if len(g.Image) != 4 || g.Config.Width != 48 || g.Config.Height != 32 {
			t.Errorf("%d frames of %dx%d, want 4 of 48x32", len(g.Image), g.Config.Width, g.Config.Height)
		}
	})
	t.Run("stt", func(t *testing.T) {
		if wav == nil {
			t.Fatal("no audio from the tts job")
		}
		if err := os.WriteFile(filepath.Join(s.files, "clip.wav"), wav, 0o644); err != nil {
			t.Fatal(err)
		}
		url := s.studio.DevFileURL("clip.wav")
		v := s.submit(t, "synthetic-stt", map[string]any{"kind": "audio_stt", "inputUrl": url, "language": "nl"})
		mustComplete(t, v)
		var res struct {
			Text     string  `json:"text"`
			Language string  `json:"language"`
			Duration float64 `json:"duration"`
		}
		if err := json.Unmarshal(v.Result, &res); err != nil {
			t.Fatal(err)
		}
		if res.Text == "" || res.Language != "nl" || res.Duration <= 0 {
			t.Errorf("transcript %s", v.Result)
		}
		if v.Prompt != url {
			t.Errorf("prompt %q, want the input URL", v.Prompt)
		}
	})
}

// TestJobForAMissingEngineFailsRetryable: no plugin serves sd-cpp here.
// The job is accepted and failed loudly (spec §6.4, no fallback), with
// retryable true: another worker that has the engine can serve it (spec
// open point 10; the reference worker does the same).
func TestJobForAMissingEngineFailsRetryable(t *testing.T) {
	s := startStack(t, stackOptions{maxAttempts: 2, catalog: func(_ *devstudio.Server, c *devstudio.Catalog) {
		addEntry(t, c, "z-image", "sd-cpp")
	}})
	v := s.submit(t, "z-image", map[string]any{"kind": "image", "prompt": "a fox"})
	if v.Status != devstudio.JobFailed || !v.Retryable || v.Attempts != 2 {
		t.Fatalf("got %+v, want failed after 2 retryable attempts", v)
	}
	if !strings.Contains(v.Error, `no engine plugin serves "sd-cpp"`) {
		t.Errorf("error %q does not say which engine is missing", v.Error)
	}
	// The node still serves.
	mustComplete(t, s.submit(t, "synthetic-llm", map[string]any{"kind": "llm", "messages": []map[string]string{{"role": "user", "content": "still there?"}}}))
}

// TestEngineErrorFailsRetryable: a plugin's typed engine error reaches the
// studio as fail{retryable:true} carrying the engine's message.
func TestEngineErrorFailsRetryable(t *testing.T) {
	s := startStack(t, stackOptions{maxAttempts: 1, catalog: func(_ *devstudio.Server, c *devstudio.Catalog) {
		addEntry(t, c, "e2e-llm", "e2e")
	}})
	v := s.submit(t, "e2e-llm", map[string]any{"kind": "llm", "messages": []map[string]string{{"role": "user", "content": "engine-error"}}})
	if v.Status != devstudio.JobFailed || !v.Retryable {
		t.Fatalf("got %+v, want a retryable failure", v)
	}
	if !strings.Contains(v.Error, "model weights unreadable") || !strings.Contains(v.Error, "engine_error") {
		t.Errorf("error %q lacks the engine's message or kind", v.Error)
	}
	mustComplete(t, s.submit(t, "e2e-llm", map[string]any{"kind": "llm", "messages": []map[string]string{{"role": "user", "content": "ok"}}}))
}

// TestLargeOutputStreamedIntact: a 64 MiB output goes plugin → supervisor
// → multipart upload → dev studio and arrives with the same sha256.
func TestLargeOutputStreamedIntact(t *testing.T) {
	s := startStack(t, stackOptions{catalog: func(_ *devstudio.Server, c *devstudio.Catalog) {
		addEntry(t, c, "e2e-blob", "e2e")
	}})
	const side = 8192 // 64 MiB
	v := s.submit(t, "e2e-blob", map[string]any{"kind": "image", "prompt": "blob-seed", "width": side, "height": side})
	mustComplete(t, v)
	h := sha256.New()
	if err := synthetic.Blob("blob-seed", side*side, h); err != nil {
		t.Fatal(err)
	}
	if want := hex.EncodeToString(h.Sum(nil)); v.ResultSHA256 != want || v.ResultBytes != side*side {
		t.Errorf("stored %d bytes sha256 %s, want %d bytes %s", v.ResultBytes, v.ResultSHA256, side*side, want)
	}
}

// TestUploadFailureFailsRetryable: when every upload attempt fails (503 on
// the first try and both retries), the job is failed retryable as an
// upload failure, never reported completed (I-11).
func TestUploadFailureFailsRetryable(t *testing.T) {
	var attempts atomic.Int32
	s := startStack(t, stackOptions{maxAttempts: 1, hooks: devstudio.Hooks{
		UploadStatus: func(_, _ string, _ int) int { attempts.Add(1); return 503 },
	}})
	v := s.submit(t, "synthetic-image", map[string]any{"kind": "image", "prompt": "x", "width": 8, "height": 8})
	if v.Status != devstudio.JobFailed || !v.Retryable || !strings.Contains(v.Error, "upload_failed") {
		t.Fatalf("got %+v, want a retryable upload failure", v)
	}
	if n := attempts.Load(); n != 3 {
		t.Errorf("%d upload attempts, want 3 (one and two retries)", n)
	}
}

// TestRefusedModelURLIsBadInput: a model file whose URL the store refuses
// (a scheme other than https) fails the job as bad input, not retryable,
// before any request is made.
func TestRefusedModelURLIsBadInput(t *testing.T) {
	s := startStack(t, stackOptions{maxAttempts: 3, catalog: func(_ *devstudio.Server, c *devstudio.Catalog) {
		err := c.Add("ftp-model", devstudio.CatalogEntry{Source: protocol.ModelSource{
			Engine:      "synthetic",
			Files:       []protocol.ModelFile{{Role: "model", URL: "ftp://models.example/x.gguf", Filename: "x.gguf"}},
			CliDefaults: &protocol.ModelCliDefaults{CfgScale: 1, Steps: 1, Width: 1, Height: 1},
		}})
		if err != nil {
			t.Fatal(err)
		}
	}})
	v := s.submit(t, "ftp-model", map[string]any{"kind": "llm", "messages": []map[string]string{{"role": "user", "content": "hi"}}})
	if v.Status != devstudio.JobFailed || v.Retryable || v.Attempts != 1 || !strings.Contains(v.Error, "bad_input") {
		t.Fatalf("got %+v, want one non-retryable bad_input failure", v)
	}
}

// TestSecretsNeverLogged: after registration, a session and jobs of both
// result paths, neither the auth token nor the registration secret appears
// in the agent's log or in the log batches the studio received.
func TestSecretsNeverLogged(t *testing.T) {
	var logs syncBuffer
	s := startStack(t, stackOptions{logOutput: &logs})
	mustComplete(t, s.submit(t, "synthetic-llm", llmTask))
	mustComplete(t, s.submit(t, "synthetic-image", map[string]any{"kind": "image", "prompt": "x", "width": 8, "height": 8}))
	creds, ok, err := registration.LoadCredentials(s.state)
	if err != nil || !ok {
		t.Fatalf("no stored credentials: %v", err)
	}
	token := creds.AuthToken.Reveal()
	if len(token) < 16 {
		t.Fatalf("implausible token %q", token)
	}
	var shipped strings.Builder
	for _, w := range s.studio.Workers() {
		entries, _ := s.studio.WorkerLogs(w.ID)
		for _, e := range entries {
			shipped.WriteString(e.Message + "\n")
		}
	}
	if shipped.Len() == 0 {
		t.Fatal("the studio received no log batches")
	}
	for name, text := range map[string]string{"agent log": logs.String(), "shipped logs": shipped.String()} {
		if strings.Contains(text, token) {
			t.Errorf("%s contains the auth token", name)
		}
	}
}

// TestLocalAPIReportsTheNode: the operator's API shows the session, the
// plugins and the job counts, and its pause reaches the studio as
// autoEnabled:false in the next heartbeat.
func TestLocalAPIReportsTheNode(t *testing.T) {
	s := startStack(t, stackOptions{listen: "127.0.0.1:0"})
	mustComplete(t, s.submit(t, "synthetic-llm", llmTask))
	base := "http://" + s.agent.LocalAPI().Addr().String()

	var st struct {
		Session struct {
			State    string `json:"state"`
			Welcomed bool   `json:"welcomed"`
		} `json:"session"`
		Plugins []struct {
			Name  string `json:"name"`
			State string `json:"state"`
		} `json:"plugins"`
		Counters struct {
			Jobs struct {
				Completed uint64 `json:"completed"`
			} `json:"jobs"`
		} `json:"counters"`
	}
	// The session counts the job once RunJob returned, a moment after the
	// studio had its result.
	var body []byte
	for deadline := time.Now().Add(time.Minute); ; {
		var err error
		if body, err = httpGet(base + "/v1/status"); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(body, &st); err != nil {
			t.Fatal(err)
		}
		if st.Counters.Jobs.Completed == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond) // polling step, not a wait for an event
	}
	if !st.Session.Welcomed || st.Counters.Jobs.Completed != 1 || len(st.Plugins) != 2 {
		t.Errorf("status %s", body)
	}
	metrics, err := httpGet(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`stoker_jobs_total{outcome="completed"} 1`,
		`stoker_job_duration_seconds_count{engine="synthetic",kind="llm",outcome="completed"} 1`,
		`stoker_plugin_resident_memory_bytes{plugin="synthetic-plugin",process="serving"} `,
		`process_resident_memory_bytes `,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s:\n%s", want, metrics)
		}
	}

	// Pausing takes the bearer token the agent wrote to its state dir.
	token, err := os.ReadFile(filepath.Join(s.state, localapi.TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, base+"/v1/pause", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("pause: %s", resp.Status)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	workers := s.studio.Workers()
	if len(workers) != 1 {
		t.Fatalf("%d workers", len(workers))
	}
	// The next heartbeat (every 5 s) carries the pause.
	_, err = s.studio.WaitWorker(ctx, workers[0].ID, func(w devstudio.WorkerView) bool {
		return w.Capabilities != nil && !w.Capabilities.AutoEnabled
	})
	if err != nil {
		t.Fatalf("the studio never saw the pause: %v", err)
	}
}

func mustComplete(t *testing.T, v devstudio.JobView) {
	t.Helper()
	if v.Status != devstudio.JobCompleted {
		t.Fatalf("job %s: %s (%s), want completed", v.ID, v.Status, v.Error)
	}
}

// checkWAV checks a RIFF/WAVE file with a PCM fmt chunk and data.
func checkWAV(t *testing.T, b []byte) {
	t.Helper()
	if len(b) < 44 || string(b[0:4]) != "RIFF" || string(b[8:12]) != "WAVE" || string(b[12:16]) != "fmt " {
		t.Fatalf("not a WAV file (%d bytes)", len(b))
	}
	format := binary.LittleEndian.Uint16(b[20:22])
	rate := binary.LittleEndian.Uint32(b[24:28])
	if format != 1 || rate == 0 {
		t.Errorf("WAV format %d rate %d, want PCM", format, rate)
	}
	if int(binary.LittleEndian.Uint32(b[4:8]))+8 != len(b) {
		t.Errorf("RIFF size %d does not match the file's %d bytes", binary.LittleEndian.Uint32(b[4:8])+8, len(b))
	}
}
