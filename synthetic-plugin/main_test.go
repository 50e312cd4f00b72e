package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"image/gif"
	"image/png"
	"os"
	"slices"
	"testing"

	"golang.org/x/image/webp"

	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/plugins/plugintest"
	"github.com/stokerhq/stoker/synthetic-plugin/synthetic"
)

// asPlugin makes the test binary run main, so the tests can launch it as
// a real plugin process without a separate build (go-plugin's
// helperProcess pattern).
const asPlugin = "STOKER_SYNTHETIC_TEST_AS_PLUGIN"

func TestMain(m *testing.M) {
	if os.Getenv(asPlugin) == "1" {
		main() // serves until the host kills it; never returns
		return
	}
	os.Exit(m.Run())
}

func request(task plugins.Task) plugins.RunRequest {
	return plugins.RunRequest{JobID: "job", Model: "synthetic", Engine: synthetic.EngineID, Task: task}
}

// cases are one job per kind with a check that the output is real.
func cases() []plugintest.Case {
	succeeded := func(t *testing.T, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	}
	return []plugintest.Case{
		{
			Name: "image webp",
			Req: request(plugins.Task{Kind: plugins.KindImage, Image: &plugins.ImageTask{
				Prompt: "a moss golem", Width: 300, Height: 200, Steps: 20, Ext: "webp",
			}}),
			Check: func(t *testing.T, r *plugintest.Recorder, err error) {
				succeeded(t, err)
				ext, data := r.OutputBytes()
				m, derr := webp.Decode(bytes.NewReader(data))
				if ext != "webp" || derr != nil || m.Bounds().Dx() != 300 || m.Bounds().Dy() != 200 {
					t.Errorf("ext %q, decode error %v", ext, derr)
				}
			},
		},
		{
			Name: "image png",
			Req: request(plugins.Task{Kind: plugins.KindImage, Image: &plugins.ImageTask{
				Prompt: "a moss golem", Width: 64, Height: 32, Steps: 20, Ext: "png",
			}}),
			Check: func(t *testing.T, r *plugintest.Recorder, err error) {
				succeeded(t, err)
				ext, data := r.OutputBytes()
				cfg, derr := png.DecodeConfig(bytes.NewReader(data))
				if ext != "png" || derr != nil || cfg.Width != 64 || cfg.Height != 32 {
					t.Errorf("ext %q, config %+v, decode error %v", ext, cfg, derr)
				}
			},
		},
		{
			Name: "video",
			Req: request(plugins.Task{Kind: plugins.KindVideo, Video: &plugins.VideoTask{
				Prompt: "a paper boat", Seconds: 1, FPS: 6, Width: 64, Height: 64, Ext: "mp4",
			}}),
			Check: func(t *testing.T, r *plugintest.Recorder, err error) {
				succeeded(t, err)
				ext, data := r.OutputBytes()
				g, derr := gif.DecodeAll(bytes.NewReader(data))
				if ext != "gif" || derr != nil || len(g.Image) != 6 {
					t.Errorf("ext %q, decode error %v", ext, derr)
				}
			},
		},
		{
			Name: "tts",
			Req: request(plugins.Task{Kind: plugins.KindTTS, TTS: &plugins.TTSTask{
				Text: "Welcome back, traveller.", Voice: "narrator", Speed: 1.1, Ext: "wav",
			}}),
			Check: func(t *testing.T, r *plugintest.Recorder, err error) {
				succeeded(t, err)
				ext, data := r.OutputBytes()
				if ext != "wav" || len(data) < 44 || string(data[0:4]) != "RIFF" || string(data[8:12]) != "WAVE" {
					t.Errorf("ext %q, %d bytes: not a WAV", ext, len(data))
				}
			},
		},
		{
			Name: "llm",
			Req: request(plugins.Task{Kind: plugins.KindLLM, LLM: &plugins.LLMTask{
				Messages: []plugins.Message{{Role: "user", Content: "Name three rivers."}}, MaxTokens: 512,
			}}),
			Check: func(t *testing.T, r *plugintest.Recorder, err error) {
				succeeded(t, err)
				var c struct {
					Object  string `json:"object"`
					Choices []struct {
						Message      struct{ Role, Content string }
						FinishReason string `json:"finish_reason"`
					}
				}
				if jerr := json.Unmarshal(r.JSON(), &c); jerr != nil || c.Object != "chat.completion" ||
					len(c.Choices) != 1 || c.Choices[0].Message.Role != "assistant" || c.Choices[0].Message.Content == "" {
					t.Errorf("result %s (%v)", r.JSON(), jerr)
				}
			},
		},
		{
			Name: "stt",
			Req: request(plugins.Task{Kind: plugins.KindSTT, STT: &plugins.STTTask{
				InputURL: "https://r2.example/clip.wav", Language: "nl",
			}}),
			Check: func(t *testing.T, r *plugintest.Recorder, err error) {
				succeeded(t, err)
				var s map[string]any
				if jerr := json.Unmarshal(r.JSON(), &s); jerr != nil || s["language"] != "nl" || s["text"] == "" {
					t.Errorf("result %s (%v)", r.JSON(), jerr)
				}
			},
		},
		{
			Name: "bad input stays typed",
			Req: request(plugins.Task{Kind: plugins.KindImage, Image: &plugins.ImageTask{
				Prompt: "x", Width: 0, Height: 64, Ext: "png",
			}}),
			Check: func(t *testing.T, r *plugintest.Recorder, err error) {
				if je := plugins.AsJobError(err); je == nil || je.Kind != plugins.ErrBadInput || je.Retryable() {
					t.Errorf("Run = %v, want a non-retryable bad_input error", err)
				}
			},
		},
		{
			Name: "real engine refused",
			Req: plugins.RunRequest{JobID: "job", Model: "z-image", Engine: "sd-cpp", Task: plugins.Task{
				Kind: plugins.KindImage, Image: &plugins.ImageTask{Prompt: "x", Width: 64, Height: 64, Ext: "webp"},
			}},
			Check: func(t *testing.T, r *plugintest.Recorder, err error) {
				if je := plugins.AsJobError(err); je == nil || je.Kind != plugins.ErrUnsupported || je.Retryable() {
					t.Errorf("Run = %v, want a non-retryable unsupported error", err)
				}
				if _, data := r.OutputBytes(); len(data) != 0 {
					t.Errorf("refused job produced %d bytes", len(data))
				}
			},
		},
	}
}

// TestConformance runs the SDK's conformance kit over real in-process gRPC.
func TestConformance(t *testing.T) {
	plugintest.Conformance(t, plugintest.Connect(t, synthetic.New(nil)), cases()...)
}

// TestPluginProcess launches this program as the supervisor does and runs
// a job of every kind through the real process.
func TestPluginProcess(t *testing.T) {
	p := plugintest.Launch(t, os.Args[0], asPlugin+"=1")
	ctx := context.Background()

	d, err := p.Describe(ctx)
	if err != nil {
		t.Fatalf("Describe: %v", err)
	}
	if !d.Ready || !slices.Equal(d.Engines, []string{synthetic.EngineID}) || !slices.Equal(d.Kinds, plugins.AllKinds) {
		t.Errorf("Describe = %+v", d)
	}
	plugintest.Conformance(t, p, cases()...)

	t.Run("large output crosses intact", func(t *testing.T) {
		// 1024×1024 WebP is 3 MiB: several transport chunks.
		req := request(plugins.Task{Kind: plugins.KindImage, Image: &plugins.ImageTask{
			Prompt: "big", Width: 1024, Height: 1024, Ext: "webp",
		}})
		remote, err := plugintest.Run(ctx, p, &req)
		if err != nil {
			t.Fatal(err)
		}
		local, err := plugintest.Run(ctx, synthetic.New(nil), &req)
		if err != nil {
			t.Fatal(err)
		}
		_, got := remote.OutputBytes()
		_, want := local.OutputBytes()
		if sha256.Sum256(got) != sha256.Sum256(want) || len(got) < 3<<20 {
			t.Errorf("plugin sent %d bytes, in-process engine made %d; digests differ or output too small", len(got), len(want))
		}
	})

	t.Run("cancel mid-job, plugin serves on", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		ev := &cancelOnProgress{cancel: cancel}
		req := request(plugins.Task{Kind: plugins.KindVideo, Video: &plugins.VideoTask{
			Prompt: "long", Seconds: 60, FPS: 8, Width: 1024, Height: 1024, Ext: "gif",
		}})
		if err := p.Run(cctx, &req, ev); err == nil {
			t.Fatal("cancelled job succeeded")
		}
		next := request(plugins.Task{Kind: plugins.KindLLM, LLM: &plugins.LLMTask{
			Messages: []plugins.Message{{Role: "user", Content: "still there?"}}, MaxTokens: 8,
		}})
		if _, err := plugintest.Run(ctx, p, &next); err != nil {
			t.Errorf("job after the cancelled one: %v", err)
		}
	})
}

// cancelOnProgress cancels its job at the first progress event.
type cancelOnProgress struct {
	plugintest.Recorder
	cancel context.CancelFunc
}

func (c *cancelOnProgress) Progress(step, total uint64, unit string) error {
	c.cancel()
	return c.Recorder.Progress(step, total, unit)
}
