package synthetic

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/gif"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"
	"golang.org/x/image/webp"

	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/plugins/plugintest"
	"github.com/stokerhq/stoker/synthetic-plugin/synthetic/internal/wav"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// progressEvent is one Events.Progress call.
type progressEvent struct {
	step, total uint64
	unit        string
}

// recorder is an Events that keeps everything a job reports and checks
// the contract's ordering rules as it goes. hook, if set, runs before
// every call and may fail it, to play a receiver that goes away.
type recorder struct {
	progress []progressEvent
	logs     []string
	ext      string
	out      bytes.Buffer
	chunks   []int // sizes of the Output calls
	result   []byte
	results  int
	calls    int
	misuse   []string // contract violations seen
	hook     func(call string) error
}

func (r *recorder) call(name string) error {
	r.calls++
	if r.hook != nil {
		return r.hook(name)
	}
	return nil
}

func (r *recorder) Progress(step, total uint64, unit string) error {
	if err := r.call("progress"); err != nil {
		return err
	}
	if step > total {
		r.misuse = append(r.misuse, fmt.Sprintf("progress %d of %d", step, total))
	}
	r.progress = append(r.progress, progressEvent{step, total, unit})
	return nil
}

func (r *recorder) Log(level, message string) error {
	if err := r.call("log"); err != nil {
		return err
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, level) {
		r.misuse = append(r.misuse, "log level "+level)
	}
	r.logs = append(r.logs, message)
	return nil
}

func (r *recorder) Output(ext string, p []byte) error {
	if err := r.call("output"); err != nil {
		return err
	}
	if r.ext != "" && ext != r.ext {
		r.misuse = append(r.misuse, fmt.Sprintf("ext changed from %q to %q", r.ext, ext))
	}
	if len(p) == 0 {
		r.misuse = append(r.misuse, "empty output chunk")
	}
	r.ext = ext
	r.chunks = append(r.chunks, len(p))
	r.out.Write(p)
	return nil
}

func (r *recorder) Result(b []byte) error {
	if err := r.call("result"); err != nil {
		return err
	}
	r.results++
	r.result = append([]byte(nil), b...)
	return nil
}

// checkContract fails t if the job broke the Events rules or reported
// both binary output and a JSON result.
func (r *recorder) checkContract(t *testing.T) {
	t.Helper()
	for _, m := range r.misuse {
		t.Errorf("contract: %s", m)
	}
	if r.out.Len() > 0 && r.results > 0 {
		t.Error("contract: both binary output and a JSON result")
	}
	if r.results > 1 {
		t.Errorf("contract: %d results, want at most 1", r.results)
	}
}

func u64(v uint64) *uint64 { return &v }

func req(task plugins.Task) *plugins.RunRequest {
	return &plugins.RunRequest{JobID: "job-1", Model: "synthetic-" + string(task.Kind), Engine: EngineID, Task: task}
}

func imageReq(prompt string, w, h uint32, ext string) *plugins.RunRequest {
	return req(plugins.Task{Kind: plugins.KindImage, Image: &plugins.ImageTask{
		Prompt: prompt, Width: w, Height: h, Steps: 20, Ext: ext,
	}})
}

func videoReq(prompt string, secs float32, fps, w, h uint32) *plugins.RunRequest {
	return req(plugins.Task{Kind: plugins.KindVideo, Video: &plugins.VideoTask{
		Prompt: prompt, Seconds: secs, FPS: fps, Width: w, Height: h, Ext: "mp4",
	}})
}

func ttsReq(text string, speed float32) *plugins.RunRequest {
	return req(plugins.Task{Kind: plugins.KindTTS, TTS: &plugins.TTSTask{
		Text: text, Voice: "default", Speed: speed, Ext: "wav",
	}})
}

func llmReq(last string, maxTokens uint32, stop ...string) *plugins.RunRequest {
	return req(plugins.Task{Kind: plugins.KindLLM, LLM: &plugins.LLMTask{
		Messages:  []plugins.Message{{Role: "user", Content: "hello there"}, {Role: "user", Content: last}},
		System:    "be brief",
		MaxTokens: maxTokens, Temperature: 0.7, Stop: stop,
	}})
}

func sttReq(audio, language string) *plugins.RunRequest {
	r := req(plugins.Task{Kind: plugins.KindSTT, STT: &plugins.STTTask{
		InputURL: "https://r2.example/signed/clip.wav?sig=abc", Language: language,
	}})
	r.Inputs.Audio = audio
	return r
}

// run runs r on a fresh engine and recorder and checks the Events
// contract.
func run(t testing.TB, r *plugins.RunRequest) (*recorder, error) {
	t.Helper()
	rec := &recorder{}
	err := New(nil).Run(context.Background(), r, rec)
	if tt, ok := t.(*testing.T); ok {
		rec.checkContract(tt)
	}
	return rec, err
}

// mustRun is run for jobs that must succeed.
func mustRun(t testing.TB, r *plugins.RunRequest) *recorder {
	t.Helper()
	rec, err := run(t, r)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return rec
}

// writeWAV writes secs seconds of silent 16 kHz mono PCM to a file in dir.
func writeWAV(t testing.TB, dir, name string, secs float64, fill byte) string {
	t.Helper()
	var b bytes.Buffer
	n := uint32(secs * 16000 * 2)
	if err := wav.WriteHeader(&b, wav.Format{SampleRate: 16000, Channels: 1, BitsPerSample: 16}, n); err != nil {
		t.Fatal(err)
	}
	b.Write(bytes.Repeat([]byte{fill}, int(n)))
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestDescribe(t *testing.T) {
	d, err := New(nil).Describe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !d.Ready || d.NotReadyReason != "" {
		t.Errorf("Ready = %v (%q), want ready", d.Ready, d.NotReadyReason)
	}
	if got, want := d.Engines, []string{"synthetic"}; !slices.Equal(got, want) {
		t.Errorf("Engines = %v, want %v", got, want)
	}
	if got, want := d.Kinds, plugins.AllKinds; !slices.Equal(got, want) {
		t.Errorf("Kinds = %v, want %v", got, want)
	}
	if d.ContractVersion != plugins.ContractVersion {
		t.Errorf("ContractVersion = %d, want %d", d.ContractVersion, plugins.ContractVersion)
	}
	if d.Device.Backend != "cpu" {
		t.Errorf("Device.Backend = %q, want cpu", d.Device.Backend)
	}
	want := map[plugins.TaskKind][]string{
		plugins.KindImage: {"synthetic", "synthetic-image"},
		plugins.KindLLM:   {"synthetic", "synthetic-llm"},
		plugins.KindSTT:   {"synthetic", "synthetic-stt"},
		plugins.KindTTS:   {"synthetic", "synthetic-tts"},
		plugins.KindVideo: {"synthetic", "synthetic-video"},
	}
	if len(d.Models) != len(want) {
		t.Errorf("Models has %d kinds, want %d", len(d.Models), len(want))
	}
	for k, w := range want {
		if got := d.Models[k]; !slices.Equal(got, w) {
			t.Errorf("Models[%s] = %v, want %v", k, got, w)
		}
	}
}

// TestDescribeIsACopy: a caller that edits one Description must not
// change the next.
func TestDescribeIsACopy(t *testing.T) {
	e := New(nil)
	d1, _ := e.Describe(context.Background())
	d1.Kinds[0] = "mangled"
	d1.Models[plugins.KindImage][0] = "llama-cpp:*"
	d2, _ := e.Describe(context.Background())
	if d2.Kinds[0] != plugins.KindImage || d2.Models[plugins.KindImage][0] != "synthetic" {
		t.Errorf("second Describe saw the first caller's edits: %v %v", d2.Kinds, d2.Models)
	}
	if plugins.AllKinds[0] != plugins.KindImage {
		t.Fatalf("Describe handed out plugins.AllKinds itself")
	}
}

func TestImageDecodes(t *testing.T) {
	tests := []struct {
		ext, wantExt string
		w, h         uint32
	}{
		{"png", "png", 1, 1},
		{"png", "png", 3, 7},
		{"webp", "webp", 1, 1},
		{"webp", "webp", 3, 7},
		{"webp", "webp", 513, 257},
		{"png", "png", 512, 512},
		{"jpeg", "png", 33, 17}, // synthetic honours webp, else png
		{"", "png", 16, 16},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%dx%d", tt.ext, tt.w, tt.h), func(t *testing.T) {
			r := imageReq("a moss golem at dawn", tt.w, tt.h, tt.ext)
			rec := mustRun(t, r)
			if rec.ext != tt.wantExt {
				t.Fatalf("ext = %q, want %q", rec.ext, tt.wantExt)
			}
			var m image.Image
			var err error
			if tt.wantExt == "webp" {
				m, err = webp.Decode(bytes.NewReader(rec.out.Bytes()))
			} else {
				m, err = png.Decode(bytes.NewReader(rec.out.Bytes()))
			}
			if err != nil {
				t.Fatalf("decoding the %s: %v", tt.wantExt, err)
			}
			if got, want := m.Bounds(), image.Rect(0, 0, int(tt.w), int(tt.h)); got != want {
				t.Fatalf("bounds = %v, want %v", got, want)
			}
			// The file holds exactly the pattern's pixels.
			p := newPattern(key("image", r.Task.Image.Prompt, "none"), int(tt.w), int(tt.h))
			for y := 0; y < int(tt.h); y++ {
				for x := 0; x < int(tt.w); x++ {
					got := color.NRGBAModel.Convert(m.At(x, y)).(color.NRGBA)
					if want := p.at(x, y, 0); got != want {
						t.Fatalf("pixel (%d,%d) = %v, want %v", x, y, got, want)
					}
				}
			}
			last := rec.progress[len(rec.progress)-1]
			if want := (progressEvent{uint64(tt.h), uint64(tt.h), "row"}); last != want {
				t.Errorf("last progress = %+v, want %+v", last, want)
			}
		})
	}
}

// TestImageIsNotBlank guards against a pattern that degenerates to one
// colour, which would still decode.
func TestImageIsNotBlank(t *testing.T) {
	for _, prompt := range []string{"a", "b", "a moss golem at dawn", ""} {
		rec := mustRun(t, imageReq(prompt, 64, 64, "png"))
		m, err := png.Decode(&rec.out)
		if err != nil {
			t.Fatal(err)
		}
		colours := map[color.Color]bool{}
		for y := range 64 {
			for x := range 64 {
				colours[m.At(x, y)] = true
			}
		}
		if len(colours) < 8 {
			t.Errorf("prompt %q: only %d colours", prompt, len(colours))
		}
	}
}

func TestLargeImageStreamsInChunks(t *testing.T) {
	rec := mustRun(t, imageReq("big", MaxImageSide, MaxImageSide, "webp"))
	if len(rec.chunks) < 4*MaxImageSide*MaxImageSide/chunkSize/2 {
		t.Errorf("%d output chunks for %d bytes; output was not streamed", len(rec.chunks), rec.out.Len())
	}
	for i, n := range rec.chunks {
		if n > chunkSize {
			t.Fatalf("chunk %d is %d bytes, above %d", i, n, chunkSize)
		}
	}
	cfg, err := webp.DecodeConfig(bytes.NewReader(rec.out.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Width != MaxImageSide || cfg.Height != MaxImageSide {
		t.Errorf("config = %dx%d", cfg.Width, cfg.Height)
	}
	if len(rec.progress) < 16 {
		t.Errorf("%d progress events for %d rows, want a band at a time", len(rec.progress), MaxImageSide)
	}
}

func TestVideoDecodes(t *testing.T) {
	tests := []struct {
		secs          float32
		fps           uint32
		w, h          uint32
		frames, delay int
	}{
		{2, 0, 64, 48, 16, 13}, // defaults: 8 fps
		{3, 12, 32, 32, 36, 8},
		{0.1, 1, 1, 1, 1, 100},
		{0.5, 50, 7, 3, 25, 2},
		{0.3, 10, 8, 8, 3, 10},       // float32(0.3) × 10 is a hair above 3
		{0.7, 3, 8, 8, 3, 33},        // 2.1 frames round up
		{0.000001, 8, 8, 8, 1, 13},   // at least one frame
		{60, 8, 2, 2, MaxFrames, 13}, // the most frames allowed
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%vs@%d/%dx%d", tt.secs, tt.fps, tt.w, tt.h), func(t *testing.T) {
			rec := mustRun(t, videoReq("a paper boat drifting", tt.secs, tt.fps, tt.w, tt.h))
			if rec.ext != "gif" {
				t.Fatalf("ext = %q, want gif", rec.ext)
			}
			g, err := gif.DecodeAll(bytes.NewReader(rec.out.Bytes()))
			if err != nil {
				t.Fatalf("decoding the gif: %v", err)
			}
			if len(g.Image) != tt.frames {
				t.Fatalf("frames = %d, want %d", len(g.Image), tt.frames)
			}
			if g.Config.Width != int(tt.w) || g.Config.Height != int(tt.h) {
				t.Errorf("size = %dx%d, want %dx%d", g.Config.Width, g.Config.Height, tt.w, tt.h)
			}
			for i, d := range g.Delay {
				if d != tt.delay {
					t.Fatalf("frame %d delay = %d, want %d", i, d, tt.delay)
				}
			}
			if !slices.ContainsFunc(rec.logs, func(s string) bool { return strings.Contains(s, "gif") && strings.Contains(s, "mp4") }) {
				t.Errorf("no log line says mp4 was answered with gif: %q", rec.logs)
			}
			last := rec.progress[len(rec.progress)-1]
			if want := (progressEvent{uint64(tt.frames), uint64(tt.frames), "frame"}); last != want {
				t.Errorf("last progress = %+v, want %+v", last, want)
			}
		})
	}
}

func TestVideoMoves(t *testing.T) {
	rec := mustRun(t, videoReq("motion", 1, 4, 48, 48))
	g, err := gif.DecodeAll(&rec.out)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(g.Image); i++ {
		if bytes.Equal(g.Image[i].Pix, g.Image[i-1].Pix) {
			t.Errorf("frame %d equals frame %d", i, i-1)
		}
	}
}

// pcm returns the samples of a 16-bit mono WAV.
func pcm(t *testing.T, b []byte) []int16 {
	t.Helper()
	info, err := wav.ReadInfo(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not a WAV: %v", err)
	}
	if want := (wav.Format{SampleRate: SampleRate, Channels: 1, BitsPerSample: 16}); info.Format != want {
		t.Fatalf("format = %+v, want %+v", info.Format, want)
	}
	if got, want := info.DataOffset+info.DataBytes, int64(len(b)); got != want {
		t.Fatalf("header says %d bytes, file has %d", got, want)
	}
	s := make([]int16, info.DataBytes/2)
	for i := range s {
		s[i] = int16(uint16(b[44+2*i]) | uint16(b[45+2*i])<<8)
	}
	return s
}

func TestTTSDecodes(t *testing.T) {
	text := "Welcome back, traveller."
	normal := mustRun(t, ttsReq(text, 0))
	if normal.ext != "wav" {
		t.Fatalf("ext = %q, want wav", normal.ext)
	}
	s := pcm(t, normal.out.Bytes())
	// 20 tones of 70 ms, 2 spaces of 40 ms, 2 pauses of 200 ms.
	if got, want := len(s), 16000*(20*70+2*40+2*200)/1000; got != want {
		t.Errorf("samples = %d, want %d", got, want)
	}
	loud := 0
	for _, v := range s {
		if v > 4000 || v < -4000 {
			loud++
		}
	}
	if loud < len(s)/4 {
		t.Errorf("only %d of %d samples are loud; no tones", loud, len(s))
	}

	fast := pcm(t, mustRun(t, ttsReq(text, 2)).out.Bytes())
	slow := pcm(t, mustRun(t, ttsReq(text, 0.5)).out.Bytes())
	if d := math.Abs(float64(len(fast))*2 - float64(len(s))); d > 25 {
		t.Errorf("speed 2 gives %d samples, want about half of %d", len(fast), len(s))
	}
	if d := math.Abs(float64(len(slow)) - 2*float64(len(s))); d > 25 {
		t.Errorf("speed 0.5 gives %d samples, want about twice %d", len(slow), len(s))
	}

	longer := pcm(t, mustRun(t, ttsReq(text+" And welcome home.", 1)).out.Bytes())
	if len(longer) <= len(s) {
		t.Errorf("longer text gave %d samples, not more than %d", len(longer), len(s))
	}
}

func TestTTSOtherExtGivesWAV(t *testing.T) {
	r := ttsReq("hello", 1)
	r.Task.TTS.Ext = "mp3"
	rec := mustRun(t, r)
	if rec.ext != "wav" {
		t.Fatalf("ext = %q, want wav", rec.ext)
	}
	pcm(t, rec.out.Bytes())
	if !slices.ContainsFunc(rec.logs, func(s string) bool { return strings.Contains(s, "mp3") }) {
		t.Errorf("no log line mentions the mp3 that was not honoured: %q", rec.logs)
	}
}

// decodeObject decodes a JSON object and checks it has exactly keys.
func decodeObject(t *testing.T, b []byte, keys ...string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("result is not a JSON object: %v: %s", err, b)
	}
	var got []string
	for k := range m {
		got = append(got, k)
	}
	slices.Sort(got)
	slices.Sort(keys)
	if !slices.Equal(got, keys) {
		t.Fatalf("keys = %v, want %v", got, keys)
	}
	return m
}

func TestLLMShape(t *testing.T) {
	rec := mustRun(t, llmReq("Name three rivers.", 512))
	if rec.out.Len() != 0 {
		t.Fatal("llm job produced binary output")
	}
	m := decodeObject(t, rec.result, "object", "model", "choices", "usage")
	if m["object"] != "chat.completion" || m["model"] != "synthetic-llm" {
		t.Errorf("object, model = %v, %v", m["object"], m["model"])
	}
	choices := m["choices"].([]any)
	if len(choices) != 1 {
		t.Fatalf("%d choices, want 1", len(choices))
	}
	c := choices[0].(map[string]any)
	decodeObject(t, mustJSON(t, c), "index", "message", "finish_reason")
	msg := c["message"].(map[string]any)
	decodeObject(t, mustJSON(t, msg), "role", "content")
	content := msg["content"].(string)
	if c["index"] != 0.0 || msg["role"] != "assistant" || c["finish_reason"] != "stop" {
		t.Errorf("choice = %v", c)
	}
	if content == "" || content != strings.TrimSpace(content) || !strings.HasSuffix(content, ".") {
		t.Errorf("content = %q, want a trimmed sentence", content)
	}
	u := decodeObject(t, mustJSON(t, m["usage"]), "prompt_tokens", "completion_tokens", "total_tokens")
	words := float64(len(strings.Fields(content)))
	// "be brief" + "hello there" + "Name three rivers."
	if u["prompt_tokens"] != 7.0 || u["completion_tokens"] != words || u["total_tokens"] != 7+words {
		t.Errorf("usage = %v for %v content words", u, words)
	}
	if n := len(rec.progress); float64(n) != words {
		t.Errorf("%d progress events for %v tokens", n, words)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type llmOut struct {
	Choices []struct {
		Message struct {
			Content string `json:"content"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage struct {
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
}

func llmRun(t *testing.T, r *plugins.RunRequest) (content, finish string, tokens int) {
	t.Helper()
	var o llmOut
	if err := json.Unmarshal(mustRun(t, r).result, &o); err != nil {
		t.Fatal(err)
	}
	return o.Choices[0].Message.Content, o.Choices[0].FinishReason, o.Usage.CompletionTokens
}

func TestLLMLimits(t *testing.T) {
	const last = "Tell me about the harbour."
	full, _, n := llmRun(t, llmReq(last, 512))
	fields := strings.Fields(full)

	t.Run("maxTokens cuts", func(t *testing.T) {
		content, finish, tokens := llmRun(t, llmReq(last, 3))
		if finish != "length" || tokens != 3 {
			t.Errorf("finish, tokens = %q, %d; want length, 3", finish, tokens)
		}
		if want := strings.Join(fields[:3], " "); content != want {
			t.Errorf("content = %q, want %q", content, want)
		}
	})
	t.Run("maxTokens exactly enough", func(t *testing.T) {
		content, finish, tokens := llmRun(t, llmReq(last, uint32(n)))
		if content != full || finish != "stop" || tokens != n {
			t.Errorf("got %q, %q, %d; want %q, stop, %d", content, finish, tokens, full, n)
		}
	})
	t.Run("stop string", func(t *testing.T) {
		stop := " " + fields[2] + " "
		want := full[:strings.Index(full, stop)]
		content, finish, _ := llmRun(t, llmReq(last, 512, "", "never-there", stop))
		if content != want || finish != "stop" {
			t.Errorf("got %q, %q; want %q, stop", content, finish, want)
		}
	})
	t.Run("stop string at the cut", func(t *testing.T) {
		stop := " " + fields[1]
		content, finish, _ := llmRun(t, llmReq(last, 2, stop))
		if content != fields[0] || finish != "stop" {
			t.Errorf("got %q, %q; want %q, stop", content, finish, fields[0])
		}
	})
}

func TestSTTShape(t *testing.T) {
	dir := t.TempDir()
	clip := writeWAV(t, dir, "clip.wav", 3.42, 0)

	rec := mustRun(t, sttReq(clip, ""))
	if rec.out.Len() != 0 {
		t.Fatal("stt job produced binary output")
	}
	m := decodeObject(t, rec.result, "text", "language", "duration")
	if m["language"] != "en" || m["duration"] != 3.42 {
		t.Errorf("language, duration = %v, %v; want en, 3.42", m["language"], m["duration"])
	}
	text := m["text"].(string)
	if n := len(strings.Fields(text)); n != 9 { // round(3.42 × 2.5)
		t.Errorf("text %q has %d words, want 9", text, n)
	}

	nl := decodeObject(t, mustRun(t, sttReq(clip, "nl")).result, "text", "language", "duration")
	if nl["language"] != "nl" {
		t.Errorf("language = %v, want nl", nl["language"])
	}

	none := decodeObject(t, mustRun(t, sttReq("", "")).result, "text", "language", "duration")
	if none["duration"] != 0.0 || none["text"] == "" {
		t.Errorf("without audio: %v; want duration 0 and some text", none)
	}

	// The words follow the audio's bytes, not its path.
	same := writeWAV(t, dir, "copy.wav", 3.42, 0)
	other := writeWAV(t, dir, "other.wav", 3.42, 1)
	if got := decodeObject(t, mustRun(t, sttReq(same, "")).result, "text", "language", "duration")["text"]; got != text {
		t.Errorf("same audio elsewhere: %q, want %q", got, text)
	}
	if got := decodeObject(t, mustRun(t, sttReq(other, "")).result, "text", "language", "duration")["text"]; got == text {
		t.Errorf("different audio gave the same text %q", got)
	}
}

func TestSTTTruncatedWAV(t *testing.T) {
	path := writeWAV(t, t.TempDir(), "cut.wav", 2, 0)
	if err := os.Truncate(path, 44+16000); err != nil { // half a second left
		t.Fatal(err)
	}
	m := decodeObject(t, mustRun(t, sttReq(path, "")).result, "text", "language", "duration")
	if m["duration"] != 0.5 {
		t.Errorf("duration = %v, want 0.5 (what the file holds, not what the header claims)", m["duration"])
	}
}

// digest runs r and returns the sha256 of everything it produced.
func digest(t *testing.T, r *plugins.RunRequest) [32]byte {
	t.Helper()
	rec := mustRun(t, r)
	return sha256.Sum256(append(rec.out.Bytes(), rec.result...))
}

func TestDeterministic(t *testing.T) {
	audio := writeWAV(t, t.TempDir(), "a.wav", 1, 3)
	seeded := func(seed uint64) *plugins.RunRequest {
		r := imageReq("golem", 40, 30, "webp")
		r.Task.Image.Seed = u64(seed)
		return r
	}
	tests := []struct {
		name       string
		make       func(prompt string) *plugins.RunRequest
		altPrompts bool // whether another prompt must change the output
	}{
		{"png", func(p string) *plugins.RunRequest { return imageReq(p, 40, 30, "png") }, true},
		{"webp", func(p string) *plugins.RunRequest { return imageReq(p, 40, 30, "webp") }, true},
		{"video", func(p string) *plugins.RunRequest { return videoReq(p, 1, 4, 24, 24) }, true},
		{"tts", func(p string) *plugins.RunRequest { return ttsReq(p, 1) }, true},
		{"llm", func(p string) *plugins.RunRequest { return llmReq(p, 64) }, true},
		// The transcript follows the audio, not the prompt (the URL).
		{"stt", func(p string) *plugins.RunRequest { return sttReq(audio, "") }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := digest(t, tt.make("first prompt")), digest(t, tt.make("first prompt"))
			if a != b {
				t.Fatalf("same task, different outputs: %x vs %x", a, b)
			}
			if c := digest(t, tt.make("second prompt")); tt.altPrompts && c == a {
				t.Errorf("different prompts, same output %x", a)
			}
		})
	}
	if digest(t, seeded(1)) == digest(t, seeded(2)) {
		t.Error("different seeds gave the same image")
	}
	if digest(t, seeded(7)) != digest(t, seeded(7)) {
		t.Error("same seed gave different images")
	}
}

// TestHostilePrompts: odd but valid text is served like any other.
func TestHostilePrompts(t *testing.T) {
	prompts := []string{
		"",
		"\x00\x01\xff not utf-8 \xc3\x28",
		"../../etc/passwd",
		"مرحبا 🦊 \u202e reversed",
		strings.Repeat("long prompt ", 100000),
	}
	for i, p := range prompts {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			for _, r := range []*plugins.RunRequest{
				imageReq(p, 8, 8, "png"), videoReq(p, 0.5, 4, 8, 8), llmReq(p, 16),
			} {
				if _, err := run(t, r); err != nil {
					t.Errorf("%s: %v", r.Task.Kind, err)
				}
			}
			if strings.TrimSpace(p) != "" && len(p) < 1000 {
				if _, err := run(t, ttsReq(p, 1)); err != nil {
					t.Errorf("tts: %v", err)
				}
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.wav")
	if err := os.WriteFile(garbage, []byte("ID3\x04 this is an mp3, honest"), 0o600); err != nil {
		t.Fatal(err)
	}
	headerOnly := filepath.Join(dir, "header-only.wav")
	if err := os.WriteFile(headerOnly, []byte("RIFF\x10\x00\x00\x00WAVEfmt "), 0o600); err != nil {
		t.Fatal(err)
	}
	nan := float32(math.NaN())
	with := func(r *plugins.RunRequest, f func(*plugins.RunRequest)) *plugins.RunRequest { f(r); return r }

	tests := []struct {
		name string
		req  *plugins.RunRequest
		want plugins.ErrorKind
	}{
		{"real engine", with(imageReq("x", 8, 8, "png"), func(r *plugins.RunRequest) { r.Engine = "sd-cpp" }), plugins.ErrUnsupported},
		{"no engine", with(llmReq("x", 8), func(r *plugins.RunRequest) { r.Engine = "" }), plugins.ErrUnsupported},
		{"engine case", with(llmReq("x", 8), func(r *plugins.RunRequest) { r.Engine = "Synthetic" }), plugins.ErrUnsupported},
		{"unknown kind", req(plugins.Task{Kind: "hologram"}), plugins.ErrUnsupported},
		{"kind without params", req(plugins.Task{Kind: plugins.KindImage}), plugins.ErrBadInput},
		{"params of another kind", req(plugins.Task{Kind: plugins.KindImage, LLM: &plugins.LLMTask{}}), plugins.ErrBadInput},
		{"image width 0", imageReq("x", 0, 8, "png"), plugins.ErrBadInput},
		{"image height 0", imageReq("x", 8, 0, "webp"), plugins.ErrBadInput},
		{"image too wide", imageReq("x", MaxImageSide+1, 8, "png"), plugins.ErrBadInput},
		{"image huge", imageReq("x", 1<<31, 1<<31, "webp"), plugins.ErrBadInput},
		{"video too tall", videoReq("x", 1, 8, 8, MaxVideoSide+1), plugins.ErrBadInput},
		{"video zero seconds", videoReq("x", 0, 8, 8, 8), plugins.ErrBadInput},
		{"video negative seconds", videoReq("x", -1, 8, 8, 8), plugins.ErrBadInput},
		{"video NaN seconds", videoReq("x", nan, 8, 8, 8), plugins.ErrBadInput},
		{"video infinite seconds", videoReq("x", float32(math.Inf(1)), 8, 8, 8), plugins.ErrBadInput},
		{"video fps too high", videoReq("x", 1, MaxFPS+1, 8, 8), plugins.ErrBadInput},
		{"video too many frames", videoReq("x", 61, 8, 8, 8), plugins.ErrBadInput},
		{"tts empty", ttsReq("", 1), plugins.ErrBadInput},
		{"tts blank", ttsReq(" \t\n", 1), plugins.ErrBadInput},
		{"tts negative speed", ttsReq("hi", -1), plugins.ErrBadInput},
		{"tts too fast", ttsReq("hi", 10), plugins.ErrBadInput},
		{"tts NaN speed", ttsReq("hi", nan), plugins.ErrBadInput},
		{"tts too long", ttsReq(strings.Repeat("a", 10_000_000), 1), plugins.ErrBadInput},
		{"llm no messages", req(plugins.Task{Kind: plugins.KindLLM, LLM: &plugins.LLMTask{MaxTokens: 8}}), plugins.ErrBadInput},
		{"llm zero budget", llmReq("x", 0), plugins.ErrBadInput},
		{"stt not a wav", sttReq(garbage, ""), plugins.ErrBadInput},
		{"stt truncated header", sttReq(headerOnly, ""), plugins.ErrBadInput},
		{"stt directory", sttReq(dir, ""), plugins.ErrBadInput},
		{"stt missing file", sttReq(filepath.Join(dir, "gone.wav"), ""), plugins.ErrEngine},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, err := run(t, tt.req)
			je := plugins.AsJobError(err)
			if je == nil {
				t.Fatal("Run succeeded, want a refusal")
			}
			if je.Kind != tt.want {
				t.Errorf("kind = %s (%v), want %s", je.Kind, err, tt.want)
			}
			if !strings.HasPrefix(je.Message, "synthetic: ") {
				t.Errorf("message %q does not say who refused", je.Message)
			}
			if tt.want == plugins.ErrUnsupported && !strings.Contains(je.Message, "cannot serve") {
				t.Errorf("message %q lacks spec §6.4's \"cannot serve\"", je.Message)
			}
			if rec.out.Len() != 0 || rec.result != nil {
				t.Errorf("refused job still produced %d bytes and result %q", rec.out.Len(), rec.result)
			}
		})
	}
}

// cancelling returns a recorder that cancels the job at its nth Events
// call, and counts calls made after that.
func cancelling(n int, cancel context.CancelFunc, after *int) *recorder {
	rec := &recorder{}
	rec.hook = func(string) error {
		if rec.calls == n {
			cancel()
		} else if rec.calls > n {
			*after++
		}
		return nil
	}
	return rec
}

func TestCancellation(t *testing.T) {
	tests := []struct {
		name string
		req  *plugins.RunRequest
		at   int // the Events call that cancels
	}{
		{"png", imageReq("big", MaxImageSide, MaxImageSide, "png"), 3},
		{"webp", imageReq("big", MaxImageSide, MaxImageSide, "webp"), 3},
		{"video", videoReq("long", 60, 8, MaxVideoSide, MaxVideoSide), 3},
		{"tts", ttsReq(strings.Repeat("speak ", 1000), 1), 3},
		{"llm", llmReq("x", 512), 2},
		{"stt", sttReq(writeWAV(t, t.TempDir(), "long.wav", 60, 0), ""), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			after := 0
			rec := cancelling(tt.at, cancel, &after)
			err := New(nil).Run(ctx, tt.req, rec)
			rec.checkContract(t)
			if je := plugins.AsJobError(err); je == nil || je.Kind != plugins.ErrCancelled {
				t.Fatalf("Run = %v, want a cancelled job error", err)
			}
			if !errors.Is(err, context.Canceled) {
				t.Errorf("error %v does not wrap context.Canceled", err)
			}
			// Promptly: nothing more reaches the receiver once the job
			// knows it is cancelled.
			if after != 0 {
				t.Errorf("%d Events calls after the cancel", after)
			}
			if rec.results != 0 {
				t.Error("a cancelled job sent its result")
			}
		})
	}
}

func TestCancelledBeforeStart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rec := &recorder{}
	err := New(nil).Run(ctx, llmReq("x", 8), rec)
	if je := plugins.AsJobError(err); je == nil || je.Kind != plugins.ErrCancelled {
		t.Fatalf("Run = %v, want cancelled", err)
	}
	if rec.calls != 0 {
		t.Errorf("%d Events calls for a job cancelled before it started", rec.calls)
	}
}

func TestReceiverGone(t *testing.T) {
	errGone := errors.New("host went away")
	tests := []struct {
		name   string
		req    *plugins.RunRequest
		failOn string
	}{
		{"image output", imageReq("x", 600, 600, "webp"), "output"},
		{"image progress", imageReq("x", 600, 600, "png"), "progress"},
		{"video output", videoReq("x", 2, 8, 256, 256), "output"},
		{"tts log", ttsReq("hello", 1), "log"},
		{"llm result", llmReq("x", 8), "result"},
		{"llm progress", llmReq("x", 8), "progress"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			failed := false
			after := 0
			rec.hook = func(call string) error {
				if failed {
					after++
				}
				if call == tt.failOn {
					failed = true
					return errGone
				}
				return nil
			}
			err := New(nil).Run(context.Background(), tt.req, rec)
			if !errors.Is(err, errGone) {
				t.Fatalf("Run = %v, want it to wrap %v", err, errGone)
			}
			if je := plugins.AsJobError(err); je.Kind != plugins.ErrEngine {
				t.Errorf("kind = %s, want %s", je.Kind, plugins.ErrEngine)
			}
			if after != 0 {
				t.Errorf("%d Events calls after the receiver failed", after)
			}
		})
	}
}

func TestConcurrentRuns(t *testing.T) {
	e := New(nil)
	want := digest(t, imageReq("shared", 64, 64, "webp"))
	errs := make(chan error, 8)
	for range cap(errs) {
		go func() {
			rec := &recorder{}
			if err := e.Run(context.Background(), imageReq("shared", 64, 64, "webp"), rec); err != nil {
				errs <- err
				return
			}
			if got := sha256.Sum256(rec.out.Bytes()); got != want {
				errs <- fmt.Errorf("concurrent run gave %x, want %x", got, want)
				return
			}
			errs <- nil
		}()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestLLMStreamsText: asked for the text as it is generated, over real
// gRPC, the engine sends one piece per word, and the pieces joined are the
// result's content; not asked, it sends none.
func TestLLMStreamsText(t *testing.T) {
	e := plugintest.Connect(t, New(nil))
	for _, stream := range []bool{true, false} {
		r := llmReq("Name three rivers.", 512, "zzz-never")
		r.StreamText = stream
		var rec plugintest.Recorder
		if err := e.Run(context.Background(), r, &rec); err != nil {
			t.Fatal(err)
		}
		var o llmOut
		if err := json.Unmarshal(rec.JSON(), &o); err != nil {
			t.Fatal(err)
		}
		got := rec.Texts()
		if !stream {
			if len(got) != 0 {
				t.Errorf("not asked: got %d pieces", len(got))
			}
			continue
		}
		if joined, want := strings.Join(got, ""), o.Choices[0].Message.Content; joined != want {
			t.Errorf("pieces joined: got %q, want the content %q", joined, want)
		}
		if len(got) != o.Usage.CompletionTokens {
			t.Errorf("got %d pieces for %d tokens", len(got), o.Usage.CompletionTokens)
		}
	}
}
